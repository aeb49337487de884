//! What a subscriber asked to see, and how: filters evaluated on the decoded alert (object
//! ids, cone, field predicate) and JSON output. Runs on blocking threads: decoding a 60 KB
//! alert takes far longer than an async task may hold the runtime.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use alertmesh_alert::{
    BytesMode, Decoder, Filter, Format, JsonOptions, NonFinite, Projection, Registry, Subject,
    WriterSchema,
};
use alertmesh_proto::v1;
use bytes::Bytes;

use crate::error::{Error, Result};
use crate::record::Record;

/// The latest writer schema seen on a topic, so filters can be checked at subscribe time.
pub(super) type SeenSchema = Arc<Mutex<Option<Arc<WriterSchema>>>>;

/// One subscriber's selection; `None` from [`Selection::from_request`] means "everything,
/// native bytes", which needs no decoding at all.
#[derive(Debug)]
pub(super) struct Selection {
    topic: String,
    filter: Option<Filter>,
    json: Option<JsonOptions>,
    /// Without JSON output only the fields the filter, key and position need are decoded
    /// (several times faster than decoding whole alerts with their cutouts and history).
    projection: Option<Projection>,
    format: Format,
    decoder: Arc<Decoder>,
    registry: Arc<Registry>,
    seen: SeenSchema,
    /// Fingerprints of writer schemas the filter was checked against.
    checked: Mutex<HashSet<u64>>,
}

/// What happens to one record.
#[derive(Debug)]
pub(super) enum Outcome {
    Keep {
        json: Option<Bytes>,
        mesh_key: Option<String>,
    },
    /// Filtered out.
    Drop,
    /// Could not be decoded: reported to the subscriber, then skipped.
    Skip(String),
}

impl Selection {
    pub(super) fn from_request(
        req: &v1::SubscribeRequest,
        topic: &str,
        format: Format,
        decoder: Arc<Decoder>,
        registry: Arc<Registry>,
        seen: SeenSchema,
    ) -> Result<Option<Selection>> {
        let invalid = |e: alertmesh_alert::Error| Error::InvalidArgument(e.to_string());
        let mut parts = Vec::new();
        if !req.ids.is_empty() {
            parts.push(Filter::object_ids(&req.ids, &registry).map_err(invalid)?);
        }
        if let Some(c) = &req.cone {
            parts.push(Filter::cone(c.ra, c.dec, c.radius).map_err(invalid)?);
        }
        if !req.filter.trim().is_empty() {
            parts.push(Filter::predicate(&req.filter).map_err(invalid)?);
        }
        let filter = match parts.len() {
            0 => None,
            1 => parts.pop(),
            _ => Some(Filter::And(parts)),
        };
        let json = match v1::Output::try_from(req.output) {
            Ok(v1::Output::Native) => None,
            Ok(v1::Output::Json) => Some(JsonOptions {
                bytes: if req.omit_cutouts {
                    BytesMode::OmitCutouts
                } else {
                    BytesMode::Base64
                },
                nonfinite: if req.json_bare_nonfinite {
                    NonFinite::Bare
                } else {
                    NonFinite::Strings
                },
            }),
            Err(_) => {
                return Err(Error::InvalidArgument(format!(
                    "unknown output {}; expected OUTPUT_NATIVE or OUTPUT_JSON",
                    req.output
                )))
            }
        };
        if filter.is_none() && json.is_none() {
            return Ok(None);
        }
        let projection = match (&filter, json) {
            (Some(f), None) => Some(Projection::for_filter(f, &registry)),
            _ => None,
        };
        let selection = Selection {
            topic: topic.to_owned(),
            filter,
            json,
            projection,
            format,
            decoder,
            registry,
            seen,
            checked: Mutex::new(HashSet::new()),
        };
        // Check against what the topic carried last, so a filter on a field that does not
        // exist fails now rather than at the first alert.
        let known = selection
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(schema) = known {
            selection.check(&schema)?;
        }
        Ok(Some(selection))
    }

    /// Whether the JSON written for kept alerts has non-finite floats as bare tokens.
    pub(super) fn bare_nonfinite(&self) -> bool {
        self.json.is_some_and(|j| j.nonfinite == NonFinite::Bare)
    }

    fn check(&self, schema: &Arc<WriterSchema>) -> Result<()> {
        let Some(filter) = &self.filter else {
            return Ok(());
        };
        let fp = schema.fingerprint();
        let mut checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
        if checked.contains(&fp) {
            return Ok(());
        }
        filter.check_schema(schema.schema()).map_err(|e| {
            Error::InvalidArgument(format!(
                "filter does not apply to topic {:?}: {e}",
                self.topic
            ))
        })?;
        checked.insert(fp);
        Ok(())
    }

    /// Decides each record's fate; fails when the filter fits no writer schema the stream
    /// has met.
    pub(super) fn evaluate(&self, records: &[Record]) -> Result<Vec<Outcome>> {
        records.iter().map(|r| self.one(r)).collect()
    }

    fn one(&self, r: &Record) -> Result<Outcome> {
        let decoded = match &self.projection {
            Some(p) => self.decoder.decode_projected(self.format, r.payload(), p),
            None => self.decoder.decode(self.format, r.payload()),
        };
        let alert = match decoded {
            Ok(a) => a,
            Err(e) => return Ok(Outcome::Skip(e.to_string())),
        };
        if let Some(schema) = alert.schema() {
            if let Err(e) = self.check(schema) {
                // A filter that fits none of the schemas the stream has met is a mistake
                // in the request (a field misspelt), told at once. Once it fits one, a
                // record of another schema that lacks its fields is skipped and reported:
                // a producer writing one such record must not end every filtered stream of
                // the topic, and every resumption of them.
                let fits_one = !self
                    .checked
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .is_empty();
                return if fits_one {
                    Ok(Outcome::Skip(e.to_string()))
                } else {
                    Err(e)
                };
            }
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if seen
                .as_ref()
                .is_none_or(|s| s.fingerprint() != schema.fingerprint())
            {
                *seen = Some(Arc::clone(schema));
            }
        }
        let subject = Subject::new(&alert, &self.registry);
        if let Some(f) = &self.filter {
            if !f.matches(&subject) {
                return Ok(Outcome::Drop);
            }
        }
        Ok(Outcome::Keep {
            json: self.json.map(|o| Bytes::from(alert.to_json(o))),
            mesh_key: subject.key.map(|k| k.to_string()),
        })
    }
}
