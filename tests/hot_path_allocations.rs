//! "No needless allocation on the hot path", made testable: a protected request with a
//! remembered session allocates only what handing the identity to the inner service needs.
//!
//! That floor is [`EXTENSION_INSERT`] = 3 allocations, all inside `http::Extensions::insert` on
//! a request whose extensions are empty (as hyper hands it over): the boxed extensions map, its
//! hash table, and the box the `Identity` (one reference-counted pointer) is stored in. The
//! identity itself is not copied: it is a clone of the remembered one (a reference count).
//!
//! The allocator below counts the allocations of the current thread only, so other tests or
//! threads of the harness do not disturb the count. This is the only test in this binary.
#![allow(unsafe_code)] // The counting allocator: it only forwards to the system allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use tower::{Layer, Service};
use tower_sso::session::NewSession;
use tower_sso::{Identity, SsoLayer, UserRole};

/// Allocations `Extensions::insert` makes on a request with no extensions yet.
const EXTENSION_INSERT: usize = 3;

struct Counting;

thread_local! {
    /// Allocations (and reallocations) made by this thread so far. `const`: no lazy
    /// initialisation, so reading it never allocates.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: the thread's storage may already be gone while it exits.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so `System`'s
// guarantees are this allocator's; the counter is a thread-local `Cell` that never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded as received (see above).
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded as received.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded as received.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as received.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

type Body = Empty<Bytes>;

/// The inner service: checks it got the identity, answers 200 at once, drops the request.
#[derive(Clone, Copy)]
struct Inner;

impl Service<Request<Body>> for Inner {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let status = match req.extensions().get::<Identity>() {
            Some(id) if id.user_id() == "alice" => StatusCode::OK,
            _ => StatusCode::IM_A_TEAPOT,
        };
        let mut res = Response::new(Body::new());
        *res.status_mut() = status;
        ready(Ok(res))
    }
}

/// `poll_ready`, `call` and one poll, as hyper does for a ready inner service; the allocations
/// made meanwhile (building `req` is not counted: hyper did that), and the status.
fn allocations_of<S>(svc: &mut S, req: Request<Body>) -> (usize, StatusCode)
where
    S: Service<Request<Body>, Error = Infallible>,
    S::Response: HasStatus,
{
    let mut cx = Context::from_waker(Waker::noop());
    let before = allocations();
    assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    let status = {
        let fut = pin!(svc.call(req));
        match fut.poll(&mut cx) {
            Poll::Ready(Ok(res)) => res.status(),
            _ => panic!("the inner service is ready at once"),
        }
    };
    (allocations() - before, status)
}

trait HasStatus {
    fn status(&self) -> StatusCode;
}

impl<B> HasStatus for Response<B> {
    fn status(&self) -> StatusCode {
        Response::status(self)
    }
}

fn request(path: &str, header: (&str, &str)) -> Request<Body> {
    Request::get(path)
        .header("host", "gateway.example.com")
        .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0)")
        .header("accept", "application/json")
        .header(header.0, header.1)
        .body(Body::new())
        .expect("request")
}

#[test]
fn a_remembered_session_allocates_only_the_extension_insert() {
    let sso = SsoLayer::builder()
        .base_url("https://gateway.example.com")
        .session_secret("allocation-test-secret-0123456789")
        .public_paths(["/health"])
        .build()
        .expect("valid config");
    let (token, _) = sso
        .sessions()
        .issue(NewSession {
            user_id: "alice".into(),
            email: Some("alice@example.com".into()),
            display_name: Some("Alice".into()),
            role: UserRole::InternalUser,
            team_ids: vec!["team-a".into(), "team-b".into()],
            provider: Some("generic".into()),
            attributes: serde_json::Map::new(),
        })
        .expect("issue");
    let mut svc = sso.layer(Inner);
    let cookie = format!("theme=dark; lang=en; token={token}; sidebar=collapsed");
    let bearer = format!("Bearer {token}");

    // The bare service: the request itself costs nothing here (it was built beforehand).
    let mut bare = Inner;
    let (n, _) = allocations_of(&mut bare, request("/api", ("cookie", &cookie)));
    assert_eq!(n, 0, "the bare service allocated");

    // The first request verifies the token in full and remembers it: it may allocate freely.
    let (_, status) = allocations_of(&mut svc, request("/api", ("cookie", &cookie)));
    assert_eq!(status, StatusCode::OK);

    for round in 0..3 {
        let (n, status) = allocations_of(&mut svc, request("/api", ("cookie", &cookie)));
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            n, EXTENSION_INSERT,
            "round {round}: allocations of a warm cookie request"
        );
        let (n, status) = allocations_of(&mut svc, request("/api", ("authorization", &bearer)));
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            n, EXTENSION_INSERT,
            "round {round}: allocations of a warm Bearer request"
        );
    }

    // A public path forwards the request untouched: nothing to allocate at all.
    let (n, status) = allocations_of(&mut svc, request("/health", ("cookie", "theme=dark")));
    assert_eq!(
        status,
        StatusCode::IM_A_TEAPOT,
        "no identity on a public path"
    );
    assert_eq!(n, 0, "a public request allocated");

    // The count is real: a request the inner service must be told about by an insert into
    // already-present extensions (one more box) shows up.
    let mut req = request("/api", ("cookie", &cookie));
    req.extensions_mut().insert(7_u32);
    let (n, status) = allocations_of(&mut svc, req);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        n, 1,
        "inserting into existing extensions boxes the identity only"
    );
}
