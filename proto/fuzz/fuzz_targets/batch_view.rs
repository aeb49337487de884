//! The zero-copy batch reader a client runs on what a gateway sends: arbitrary bytes as an
//! `AlertBatch`, then every view's fields, headers and owned copy. Errors are fine, panics
//! and hangs are not.
#![no_main]

use alertmesh_proto::view::AlertBatchView;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(batch) = AlertBatchView::decode(data) else {
        return;
    };
    for alert in &batch.alerts {
        if let Ok(fields) = alert.fields() {
            // A hostile batch may repeat headers without end: the iterator must end.
            for header in fields.headers().take(1 << 16) {
                let _ = header;
            }
        }
        let _ = alert.to_alert();
    }
});
