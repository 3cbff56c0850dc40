//! The user's groups from Microsoft Graph.
//!
//! `GET {graph}/me/memberOf` with the user's access token lists the directory objects the user
//! is a direct member of, a page at a time: each page's `@odata.nextLink` is the next page's URL.
//! At most [`MAX_PAGES`] pages are read (a warning says when more remain); objects without an
//! id are skipped. With a service principal configured,
//! `GET {graph}/servicePrincipals/{id}/appRoleAssignedTo` (paged the same way) lists what is
//! assigned to the enterprise application; its `Group` principals are the groups that count.
//!
//! Every call goes through the layer's IdP HTTP client (its timeout and size cap). A next link
//! is followed only on the Graph base URL's origin: the access token is never sent elsewhere.

use serde_json::{Map, Value};

use super::MicrosoftSettings;
use crate::error::SsoError;
use crate::http::HttpClient;
use crate::providers::NamedTeam;

/// The most pages read from one Graph listing (upstream's `MAX_GRAPH_API_PAGES`).
pub(crate) const MAX_PAGES: usize = 200;

const PREFIX: &str = "Microsoft Graph request failed";

/// What Graph says about the user's groups.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct UserGroups {
    /// The group ids that count, in Graph's order, once each.
    pub(crate) ids: Vec<String>,
    /// With a service principal: every group assigned to it (the user's or not), to be created
    /// as a team when missing.
    pub(crate) service_principal_teams: Vec<NamedTeam>,
}

/// The user's groups: `/me/memberOf`, filtered to the service principal's groups when one is
/// configured (then only those count, none if it has no group assigned).
pub(crate) async fn user_groups(
    http: &HttpClient,
    settings: &MicrosoftSettings,
    access_token: &str,
) -> Result<UserGroups, SsoError> {
    let base = &settings.graph_base_url;
    let mut ids: Vec<String> = Vec::new();
    read_pages(
        http,
        base,
        &format!("{base}/me/memberOf"),
        access_token,
        |object| {
            if let Some(id) = object
                .get("id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                && !ids.iter().any(|g| g == id)
            {
                ids.push(id.to_owned());
            }
        },
    )
    .await?;
    let Some(sp) = &settings.service_principal_id else {
        return Ok(UserGroups {
            ids,
            service_principal_teams: Vec::new(),
        });
    };
    let mut teams: Vec<NamedTeam> = Vec::new();
    let url = format!("{base}/servicePrincipals/{sp}/appRoleAssignedTo");
    read_pages(http, base, &url, access_token, |object| {
        if object.get("principalType").and_then(Value::as_str) != Some("Group") {
            return;
        }
        let Some(id) = object
            .get("principalId")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        else {
            return;
        };
        if !teams.iter().any(|t| t.id == id) {
            teams.push(NamedTeam {
                id: id.to_owned(),
                alias: object
                    .get("principalDisplayName")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            });
        }
    })
    .await?;
    ids.retain(|g| teams.iter().any(|t| &t.id == g));
    Ok(UserGroups {
        ids,
        service_principal_teams: teams,
    })
}

/// Reads a paged Graph listing from `first`, handing each object of each page's `value` to
/// `each`; follows `@odata.nextLink` for at most [`MAX_PAGES`] pages.
async fn read_pages(
    http: &HttpClient,
    base: &str,
    first: &str,
    access_token: &str,
    mut each: impl FnMut(&Map<String, Value>),
) -> Result<(), SsoError> {
    let mut next = Some(first.to_owned());
    for _ in 0..MAX_PAGES {
        let Some(url) = next.take() else {
            return Ok(());
        };
        let page = get_page(http, &url, access_token).await?;
        match page.get("value") {
            Some(Value::Array(objects)) => objects
                .iter()
                .filter_map(Value::as_object)
                .for_each(&mut each),
            None | Some(Value::Null) => {}
            Some(_) => {
                return Err(SsoError::bad_gateway(format!(
                    "{PREFIX}: unexpected response format"
                )));
            }
        }
        next = match page.get("@odata.nextLink") {
            Some(Value::String(link)) => {
                if !same_origin(base, link) {
                    return Err(SsoError::bad_gateway(format!(
                        "{PREFIX}: a paging link leads away from Microsoft Graph"
                    )));
                }
                Some(link.clone())
            }
            _ => None,
        };
    }
    if next.is_some() {
        tracing::warn!(
            max_pages = MAX_PAGES,
            "Microsoft Graph listing has more pages than are read; the rest is ignored"
        );
    }
    Ok(())
}

/// One page: a 200 JSON object (the body is never quoted in errors).
async fn get_page(
    http: &HttpClient,
    url: &str,
    access_token: &str,
) -> Result<Map<String, Value>, SsoError> {
    let req = crate::oidc::get_json_request(url, Some(access_token))
        .ok_or_else(|| SsoError::bad_gateway(format!("{PREFIX}: invalid request URL")))?;
    let res = crate::oidc::send(http, crate::metrics::IdpEndpoint::Graph, req)
        .await
        .map_err(|e| crate::oidc::transport_error(PREFIX, &e))?;
    if res.status() != http::StatusCode::OK {
        return Err(SsoError::bad_gateway(format!(
            "{PREFIX}: Graph answered HTTP {}",
            res.status().as_u16()
        )));
    }
    match serde_json::from_slice::<Value>(res.body()) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(SsoError::bad_gateway(format!(
            "{PREFIX}: unexpected response format"
        ))),
    }
}

/// `link` has `base`'s scheme, host and port.
fn same_origin(base: &str, link: &str) -> bool {
    match (url::Url::parse(base), url::Url::parse(link)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::oidc::test_support::{fixed, mock_client};

    const BASE: &str = "https://graph.example.com/v1.0";

    fn settings(sp: Option<&str>) -> MicrosoftSettings {
        MicrosoftSettings {
            graph_base_url: BASE.to_owned(),
            service_principal_id: sp.map(str::to_owned),
            ..MicrosoftSettings::default()
        }
    }

    #[tokio::test]
    async fn ids_from_the_value_objects_skipping_those_without_one() {
        let (http, rec) = fixed(
            200,
            r#"{"value":[{"id":"group1"},{"id":null},{"displayName":"x"},{"id":"group2"},{"id":"group1"}]}"#,
        );
        let g = user_groups(&http, &settings(None), "at").await.unwrap();
        assert_eq!(g.ids, ["group1", "group2"]);
        assert_eq!(rec.count(), 1);
        assert_eq!(rec.requests()[0].uri(), &format!("{BASE}/me/memberOf")[..]);
        let (http, _) = fixed(200, r#"{"value":[]}"#);
        assert!(
            user_groups(&http, &settings(None), "at")
                .await
                .unwrap()
                .ids
                .is_empty()
        );
    }

    #[tokio::test]
    async fn failures_are_errors_never_quoting_the_answer() {
        for (status, body) in [
            (500, "SECRET-BODY"),
            (200, "SECRET-BODY"),
            (200, "[1]"),
            (200, r#"{"value":"SECRET-BODY"}"#),
        ] {
            let (http, _) = fixed(status, body);
            let e = user_groups(&http, &settings(None), "at").await.unwrap_err();
            assert_eq!(e.status(), http::StatusCode::BAD_GATEWAY);
            assert!(!e.message().contains("SECRET"), "{}", e.message());
        }
    }

    #[tokio::test]
    async fn next_links_to_another_origin_are_not_followed() {
        let (http, rec) = fixed(
            200,
            r#"{"value":[{"id":"g"}],"@odata.nextLink":"https://evil.example.com/v1.0/me/memberOf?$skiptoken=2"}"#,
        );
        let e = user_groups(&http, &settings(None), "at").await.unwrap_err();
        assert!(e.message().contains("away"), "{}", e.message());
        assert_eq!(rec.count(), 1);
    }

    #[tokio::test]
    async fn pages_stop_at_the_cap() {
        let (http, rec) = mock_client(Duration::ZERO, |req| {
            let n: usize = req
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("$skiptoken="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            Ok((
                200,
                format!(
                    r#"{{"value":[{{"id":"g{n}"}}],"@odata.nextLink":"{BASE}/me/memberOf?$skiptoken={}"}}"#,
                    n + 1
                ),
            ))
        });
        let g = user_groups(&http, &settings(None), "at").await.unwrap();
        assert_eq!(g.ids.len(), MAX_PAGES);
        assert_eq!(rec.count(), MAX_PAGES);
    }

    #[tokio::test]
    async fn service_principal_groups_filter_and_name_the_teams() {
        let (http, _) = mock_client(Duration::ZERO, |req| {
            let body = if req.uri().path().ends_with("/appRoleAssignedTo") {
                r#"{"value":[
                    {"principalType":"Group","principalId":"g1","principalDisplayName":"Team One"},
                    {"principalType":"User","principalId":"g2"},
                    {"principalType":"Group","principalId":"g3"},
                    {"principalType":"Group","principalId":null}]}"#
            } else {
                r#"{"value":[{"id":"g1"},{"id":"g2"},{"id":"g4"}]}"#
            };
            Ok((200, body.to_owned()))
        });
        let g = user_groups(&http, &settings(Some("sp-1")), "at")
            .await
            .unwrap();
        assert_eq!(g.ids, ["g1"]);
        assert_eq!(
            g.service_principal_teams,
            [
                NamedTeam {
                    id: "g1".into(),
                    alias: Some("Team One".into())
                },
                NamedTeam {
                    id: "g3".into(),
                    alias: None
                },
            ]
        );
    }
}
