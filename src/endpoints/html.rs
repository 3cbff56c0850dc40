//! HTML the layer writes itself (the CLI login's success page, the debug login's page), and the
//! one escaping function every piece of text in it goes through.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

/// The `Content-Security-Policy` of every page the layer writes: no script, style, image, frame
/// or form of any origin, so even markup that slipped through escaping could do nothing.
const PAGE_CSP: &str =
    "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Escapes text for HTML (and keeps messages that echo input harmless anywhere). Control
/// characters become U+FFFD.
pub(crate) fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            '/' => out.push_str("&#x2F;"),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// [`html_escape`] line by line, keeping the line breaks (for a `<pre>` block).
pub(crate) fn html_escape_lines(text: &str) -> String {
    text.split('\n')
        .map(html_escape)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A complete page: `title` is escaped here, `body` must already be HTML built from escaped
/// text. Not cacheable, not sniffable, under [`PAGE_CSP`].
pub(crate) fn page(status: StatusCode, title: &str, body: &str) -> Response<Full<Bytes>> {
    let title = html_escape(title);
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n</head>\n<body>\n<h1>{title}</h1>\n{body}\n</body>\n</html>\n"
    );
    let mut res = Response::new(Full::new(Bytes::from(html)));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            html_escape("<script>'\"&/"),
            "&lt;script&gt;&#x27;&quot;&amp;&#x2F;"
        );
        assert_eq!(html_escape_lines("a<\n>b"), "a&lt;\n&gt;b");
    }

    #[test]
    fn pages_escape_the_title_and_forbid_everything() {
        let res = page(StatusCode::OK, "</title><script>x</script>", "<p>ok</p>");
        assert!(
            res.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .starts_with("default-src 'none'")
        );
    }
}
