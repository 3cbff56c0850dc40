//! A command-line client of the CLI login, speaking upstream's wire format (what
//! `litellm-proxy login` does).
//!
//! ```text
//! cargo run --example demo &                  # or any service behind the layer
//! cargo run --example cli_login               # BASE_URL (env or first argument), default http://127.0.0.1:4000
//! ```
//!
//! It makes a random key `sk-…`, prints the URL to open in a browser, polls
//! `/sso/cli/poll/{key}` once a second, asks which team to use when the user has several (the
//! number or the team id, on stdin), and prints the session token on stdout. Use it as
//! `Authorization: Bearer <token>`:
//!
//! ```text
//! TOKEN=$(cargo run -q --example cli_login)
//! curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:4000/whoami
//! ```

use std::io::Write;
use std::time::{Duration, Instant};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use bytes::Bytes;
use http::{Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt;
use tower_sso::http::{HttpClient, HttpClientConfig, default_client};

/// How long the login may take before the client gives up (the server keeps a finished login
/// for 600 s).
const GIVE_UP_AFTER: Duration = Duration::from_secs(600);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("BASE_URL").ok())
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| "http://127.0.0.1:4000".to_owned());
    let base = base.trim().trim_end_matches('/').to_owned();
    let key = random_key()?;
    // The crate's own client: hyper-util over rustls, timeouts, no redirects, a body cap.
    let client = default_client(&HttpClientConfig::default());

    eprintln!(
        "Open this URL in your browser to log in:\n\n  {base}/sso/key/generate?source=litellm-cli&key={key}\n"
    );
    eprintln!("Waiting for the login to finish...");

    let started = Instant::now();
    let mut team: Option<String> = None;
    loop {
        if started.elapsed() > GIVE_UP_AFTER {
            return Err("the login did not finish in time".into());
        }
        let mut url = format!("{base}/sso/cli/poll/{key}");
        if let Some(t) = &team {
            url.push_str("?team_id=");
            url.extend(url::form_urlencoded::byte_serialize(t.as_bytes()));
        }
        let (status, retry_after, body) = get(&client, &url).await?;
        match status {
            StatusCode::OK => {}
            StatusCode::TOO_MANY_REQUESTS => {
                tokio::time::sleep(Duration::from_secs(retry_after.unwrap_or(5))).await;
                continue;
            }
            StatusCode::FORBIDDEN if team.is_some() => {
                eprintln!("That team was refused: {}", error_message(&body));
                team = None;
                continue;
            }
            other => {
                return Err(
                    format!("the server answered {other}: {}", error_message(&body)).into(),
                );
            }
        }
        let answer: Value = serde_json::from_slice(&body)?;
        match answer["status"].as_str() {
            Some("pending") => {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Some("ready") if answer["requires_team_selection"] == Value::Bool(true) => {
                team = Some(choose_team(&answer).await?);
            }
            Some("ready") => {
                let token = answer["key"]
                    .as_str()
                    .ok_or("a ready answer without a key")?;
                eprintln!(
                    "Logged in as {} (team: {}).",
                    answer["user_id"].as_str().unwrap_or("?"),
                    answer["team_id"].as_str().unwrap_or("none")
                );
                println!("{token}");
                return Ok(());
            }
            _ => return Err("unexpected answer from the server".into()),
        }
    }
}

/// `sk-` and 32 random hex digits (upstream's CLI uses a UUID).
fn random_key() -> Result<String, Box<dyn std::error::Error>> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "no system randomness")?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("sk-{hex}"))
}

/// One GET: status, `Retry-After` seconds, body.
async fn get(
    client: &HttpClient,
    url: &str,
) -> Result<(StatusCode, Option<u64>, Bytes), Box<dyn std::error::Error>> {
    let req = Request::get(url)
        .header(header::ACCEPT, "application/json")
        .body(Bytes::new())?;
    let res = client
        .clone()
        .oneshot(req)
        .await
        .map_err(|e| format!("request to the server failed: {e:?}"))?;
    let retry_after = res
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    Ok((res.status(), retry_after, res.into_body()))
}

/// The `error.message` of an error answer (LiteLLM's shape), or a placeholder.
fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "(no details)".to_owned())
}

/// Lists the teams of a `requires_team_selection` answer and reads the choice from stdin: a
/// number from the list or a team id.
async fn choose_team(answer: &Value) -> Result<String, Box<dyn std::error::Error>> {
    let teams: Vec<(String, Option<String>)> = match answer["team_details"].as_array() {
        Some(details) if !details.is_empty() => details
            .iter()
            .filter_map(|d| {
                Some((
                    d["team_id"].as_str()?.to_owned(),
                    d["team_alias"].as_str().map(str::to_owned),
                ))
            })
            .collect(),
        _ => answer["teams"]
            .as_array()
            .map(|ts| {
                ts.iter()
                    .filter_map(|t| Some((t.as_str()?.to_owned(), None)))
                    .collect()
            })
            .unwrap_or_default(),
    };
    if teams.is_empty() {
        return Err("the server asked for a team but listed none".into());
    }
    eprintln!("You belong to several teams:");
    for (i, (id, alias)) in teams.iter().enumerate() {
        match alias {
            Some(a) => eprintln!("  {}. {a} ({id})", i + 1),
            None => eprintln!("  {}. {id}", i + 1),
        }
    }
    loop {
        eprint!("Team to use (1-{}): ", teams.len());
        std::io::stderr().flush()?;
        let line = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map(|n| (n, line))
        })
        .await??;
        if line.0 == 0 {
            return Err("no team chosen (end of input)".into());
        }
        let choice = line.1.trim();
        if let Ok(n) = choice.parse::<usize>()
            && (1..=teams.len()).contains(&n)
        {
            return Ok(teams[n - 1].0.clone());
        }
        if let Some((id, _)) = teams.iter().find(|(id, _)| id == choice) {
            return Ok(id.clone());
        }
        eprintln!("Not one of the teams above.");
    }
}
