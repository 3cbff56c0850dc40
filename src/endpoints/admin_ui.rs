//! The answer of login start and callback when the admin UI is disabled (`DISABLE_ADMIN_UI`).

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

/// Upstream's `admin_ui_disabled()` answer: 200 and an HTML page saying the UI is off and how to
/// turn it back on. No login starts, no session is set.
pub(crate) fn disabled() -> Response<Full<Bytes>> {
    const PAGE: &str = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>Admin UI disabled</title></head><body>\
<h1>The admin UI is disabled</h1>\
<p>An administrator has switched off sign-in to the admin UI on this server. \
API keys and existing sessions keep working.</p>\
<p>To switch it back on, set <code>DISABLE_ADMIN_UI=false</code> (or remove it) and restart.</p>\
</body></html>\n";
    let mut res = Response::new(Full::new(Bytes::from_static(PAGE.as_bytes())));
    *res.status_mut() = StatusCode::OK;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'"),
    );
    res
}
