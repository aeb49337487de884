//! A peer gateway's declared query as a mirror source: `Query` from the recovered resume
//! token, the rows the destination already holds dropped, each further row a record of
//! partition 0 whose `am-source` is its row ref and whose `am-resume` says where the
//! stream goes on after it (see [`QueryResume`]).

use alertmesh_proto::v1 as pb;
use tokio::sync::mpsc;

use super::gateway::{failure, status_failure, Peer};
use super::{Batches, CHANNEL_BATCHES};
use crate::convert::{QueryCopy, SourceRecord};
use crate::resume::QueryResume;
use crate::{Error, Result};

/// Where the reader stands: the last token and how many rows of the stream from it came
/// since, and how many rows this mirror has copied.
#[derive(Debug)]
struct Position {
    seq: u64,
    token: String,
    since: u64,
}

impl Peer {
    /// Streams the query's rows after `resume` until the stream fails or the receiver is
    /// dropped. Without `follow` the stream ends with the result; the reader then idles
    /// (a restarted mirror asks again and copies rows added since).
    pub(crate) async fn stream_query(self, resume: &QueryResume) -> Result<Batches> {
        let query = self.source.query.clone().ok_or_else(|| Error::Spec {
            name: self.label.clone(),
            reason: "not a query source".into(),
        })?;
        let message = pb::QueryRequest {
            name: query.name.clone(),
            r#where: self.source.filter.clone().unwrap_or_default(),
            cone: query
                .cone
                .map(|[ra, dec, radius]| pb::Cone { ra, dec, radius }),
            ids: query.ids.clone(),
            output: pb::Output::Native as i32,
            resume_token: resume.token.clone(),
            follow: query.follow,
            ..Default::default()
        };
        let mut stream = self
            .call(|mut c, r| async move { c.query(r).await }, message)
            .await
            .map_err(|e| match e {
                // The token came out of the destination: say where, so that a token of
                // another query (or a changed where) is traced to its record.
                Error::Refused {
                    source_name,
                    reason,
                } if !resume.token.is_empty() && reason.contains("resume_token") => {
                    Error::Refused {
                        source_name,
                        reason: format!(
                            "{reason} (the token is from the am-resume header of {}'s last copy \
                             in the destination)",
                            resume.prefix()
                        ),
                    }
                }
                e => e,
            })?;
        let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
        let mut to_skip = resume.skip;
        let last_ref = resume.last_ref.clone();
        let prefix = resume.prefix().to_owned();
        let mut at = Position {
            seq: resume.seq,
            token: resume.token.clone(),
            since: 0,
        };
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    _ = tx.closed() => return,
                    next = stream.message() => next,
                };
                let batch = match next {
                    Ok(Some(batch)) => batch,
                    Ok(None) if !query.follow => {
                        tracing::info!(copied = at.seq, "the query result is copied; new rows are copied when the mirror restarts");
                        tx.closed().await;
                        return;
                    }
                    Ok(None) => {
                        let _ = tx
                            .send(Err(failure(&self.label, "the stream ended".into())))
                            .await;
                        return;
                    }
                    Err(s) => {
                        let _ = tx
                            .send(Err(status_failure(&self.label, "stream failed: ", &s)))
                            .await;
                        return;
                    }
                };
                let records = rows(&self.name, &prefix, batch, &mut at, &mut to_skip, &last_ref);
                if !records.is_empty() && tx.send(Ok(records)).await.is_err() {
                    return;
                }
            }
        });
        Ok(rx)
    }
}

/// The records of one batch, after dropping what the destination already holds.
fn rows(
    gateway: &str,
    query: &str,
    batch: pb::QueryBatch,
    at: &mut Position,
    to_skip: &mut u64,
    last_ref: &Option<String>,
) -> Vec<SourceRecord> {
    let count = batch.alerts.len();
    let mut out = Vec::with_capacity(count);
    for (i, alert) in batch.alerts.into_iter().enumerate() {
        at.since += 1;
        if *to_skip > 0 {
            *to_skip -= 1;
            // The last row the destination holds ends the skip even if rows before it
            // were deleted at the source since.
            if last_ref.as_deref() == Some(alert.r#ref.as_str()) {
                *to_skip = 0;
            } else if *to_skip == 0 {
                if let Some(suppressed) = MISMATCH.admit() {
                    tracing::warn!(expected = ?last_ref, found = %alert.r#ref, suppressed, "resumed query rows differ from the copied ones (rows changed at the source)");
                }
            }
            continue;
        }
        at.seq += 1;
        let resume = if i + 1 == count && !batch.resume_token.is_empty() {
            QueryResume::header(at.seq, 0, &batch.resume_token)
        } else {
            QueryResume::header(at.seq, at.since, &at.token)
        };
        out.push(record(gateway, query, alert, at.seq, resume));
    }
    if !batch.resume_token.is_empty() {
        at.token = batch.resume_token;
        at.since = 0;
    }
    out
}

/// A row alert in the mirror's terms; its ref is its `am-source`.
fn record(gateway: &str, query: &str, alert: pb::Alert, seq: u64, resume: String) -> SourceRecord {
    SourceRecord {
        partition: 0,
        offset: i64::try_from(seq).unwrap_or(i64::MAX),
        timestamp: None,
        key: alert.key.map(|k| k.to_vec()),
        payload: alert.payload,
        headers: Vec::new(),
        source_ref: alert.r#ref,
        gateway: Some(gateway.to_owned()),
        format: alert.format.parse().ok(),
        namespace: alert.namespace,
        schema: None,
        mesh_key: Some(alert.mesh_key).filter(|k| !k.is_empty()),
        resume: Some(QueryCopy {
            query: query.to_owned(),
            resume,
        }),
    }
}

/// Logs of resumed rows that differ from the copied ones.
static MISMATCH: crate::limit::RateLimit = crate::limit::RateLimit::new();
