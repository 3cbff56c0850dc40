//! Everything a test binary logs, captured in memory: a `tracing` subscriber installed once per
//! binary, writing into a shared buffer the tests read back.
#![allow(dead_code)]

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use tracing_subscriber::fmt::MakeWriter;

/// The captured log output.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Capture {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

/// Installs the capturing subscriber at `level` (every target, with span fields and `log`
/// records, which `try_init` bridges) the first time it is called in this binary; later calls
/// return the same capture.
pub fn capture(level: tracing::Level) -> Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let capture = Capture::default();
            tracing_subscriber::fmt()
                .with_max_level(level)
                .with_writer(capture.clone())
                .with_ansi(false)
                .with_target(true)
                .try_init()
                .expect("no other subscriber in this binary");
            capture
        })
        .clone()
}

/// One closed span: its name and every field it was given or recorded later, as text (strings
/// as they are, anything else as its `Debug`).
#[derive(Clone, Debug)]
pub struct SpanRecord {
    pub name: &'static str,
    pub fields: std::collections::BTreeMap<String, String>,
}

impl SpanRecord {
    /// The value of field `name`, if it was recorded.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// The spans closed so far in this binary ([`capture_with_spans`]).
#[derive(Clone, Default)]
pub struct Spans(Arc<Mutex<Vec<SpanRecord>>>);

impl Spans {
    /// Every span closed so far.
    pub fn closed(&self) -> Vec<SpanRecord> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[derive(Default)]
struct SpanFields(std::collections::BTreeMap<String, String>);

impl tracing::field::Visit for SpanFields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S> tracing_subscriber::Layer<S> for Spans
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut fields = SpanFields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<SpanFields>()
        {
            values.record(fields);
        }
    }

    fn on_close(&self, id: tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        if let Some(span) = ctx.span(&id) {
            let fields = span
                .extensions_mut()
                .remove::<SpanFields>()
                .unwrap_or_default();
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(SpanRecord {
                    name: span.name(),
                    fields: fields.0,
                });
        }
    }
}

/// Like [`capture`], also keeping every closed span with its fields ([`Spans`]). A binary uses
/// one or the other.
pub fn capture_with_spans(level: tracing::Level) -> (Capture, Spans) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    static CAPTURE: OnceLock<(Capture, Spans)> = OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let capture = Capture::default();
            let spans = Spans::default();
            tracing_subscriber::registry()
                .with(tracing_subscriber::filter::LevelFilter::from_level(level))
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_writer(capture.clone())
                        .with_ansi(false)
                        .with_target(true)
                        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE),
                )
                .with(spans.clone())
                .try_init()
                .expect("no other subscriber in this binary");
            (capture, spans)
        })
        .clone()
}
