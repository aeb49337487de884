//! A Kafka record's headers, read without trusting their names.
//!
//! rdkafka 0.39 unwraps every header name as UTF-8 (`BorrowedHeaders::try_get`), so a
//! producer that writes a name that is not (the librdkafka C API and Go clients can) made it
//! panic in whatever thread read the record: a subscription's reader (its stream then
//! stalled, and every restart met the record again), the publish id index, a mirror.
//! Each header is read on its own here, and one whose name is not UTF-8 is left out and
//! counted; the panic that reading it raises is caught, and kept out of the log by
//! [`quiet_header_name_panics`].

use std::panic::{catch_unwind, AssertUnwindSafe};

use rdkafka::message::{BorrowedHeaders, Headers};

/// A header borrowed from its record: name and value (`None` for a null value).
pub type Header<'a> = (&'a str, Option<&'a [u8]>);

/// The headers of a record whose names are UTF-8, in order, and how many were left out.
pub fn readable(hs: &BorrowedHeaders) -> (Vec<Header<'_>>, usize) {
    let mut out = Vec::with_capacity(hs.count());
    let left_out = for_each_readable(hs, |k, v| out.push((k, v)));
    (out, left_out)
}

/// Calls `f` with each header whose name is UTF-8, in order (no allocation: the read path
/// of every alert); returns how many were left out.
pub fn for_each_readable<'a>(
    hs: &'a BorrowedHeaders,
    mut f: impl FnMut(&'a str, Option<&'a [u8]>),
) -> usize {
    let mut left_out = 0;
    for i in 0..hs.count() {
        match catch_unwind(AssertUnwindSafe(|| hs.try_get(i))) {
            Ok(Some(h)) => f(h.key, h.value),
            Ok(None) => {}
            Err(_) => left_out += 1,
        }
    }
    left_out
}

/// Keeps the panic rdkafka raises on a header name that is not UTF-8 out of the log
/// (callers of [`readable`] count and report it themselves, rate-limited); every other
/// panic still reaches the hook installed before.
pub fn quiet_header_name_panics() {
    let before = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let from_headers = info.location().is_some_and(|l| {
            let file = l.file().replace('\\', "/");
            file.contains("/rdkafka-") && file.ends_with("/src/message.rs")
        });
        let payload = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if !(from_headers && payload.contains("Utf8Error")) {
            before(info);
        }
    }));
}
