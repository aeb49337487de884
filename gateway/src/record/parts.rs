//! A Kafka record's parts as borrowed from where it was read, before they are encoded:
//! what the arena and the encoder take, whether the record comes from librdkafka or a test.

/// A record's headers, in a small array unless there are many.
#[derive(Debug, Default)]
pub(super) struct HeaderList<'a> {
    inline: [(&'a str, Option<&'a [u8]>); 8],
    count: usize,
    many: Vec<(&'a str, Option<&'a [u8]>)>,
}

impl<'a> HeaderList<'a> {
    pub(super) fn extend(&mut self, headers: impl Iterator<Item = (&'a str, Option<&'a [u8]>)>) {
        for h in headers {
            if self.count < self.inline.len() {
                self.inline[self.count] = h;
            } else {
                if self.many.is_empty() {
                    self.many.extend_from_slice(&self.inline);
                }
                self.many.push(h);
            }
            self.count += 1;
        }
    }

    pub(super) fn as_slice(&self) -> &[(&'a str, Option<&'a [u8]>)] {
        if self.many.is_empty() {
            &self.inline[..self.count]
        } else {
            &self.many
        }
    }
}

/// A Kafka record's parts, borrowed from where it was read. `headers` is walked twice (to
/// size the encoding, then to write it), so it must be cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Parts<'a, H> {
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    /// Kafka timestamp in milliseconds since the epoch, when the record has one.
    pub(crate) timestamp_ms: Option<i64>,
    pub(crate) key: Option<&'a [u8]>,
    /// Name and value of each Kafka header, in order.
    pub(crate) headers: H,
    pub(crate) payload: &'a [u8],
}

/// Headers of a record that has none.
#[cfg(test)]
pub(crate) type NoHeaders<'a> = std::iter::Empty<(&'a str, Option<&'a [u8]>)>;

#[cfg(test)]
impl<'a> Parts<'a, NoHeaders<'a>> {
    /// A record with only a position and a payload.
    pub(crate) fn plain(partition: i32, offset: i64, payload: &'a [u8]) -> Self {
        Parts {
            partition,
            offset,
            timestamp_ms: None,
            key: None,
            headers: std::iter::empty(),
            payload,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lists_keep_every_header_in_order() {
        for n in [0usize, 1, 8, 9, 20] {
            let names: Vec<String> = (0..n).map(|i| format!("h{i}")).collect();
            let headers: Vec<(&str, Option<&[u8]>)> = names
                .iter()
                .map(|k| (k.as_str(), (k.len() % 2 == 0).then_some(k.as_bytes())))
                .collect();
            let mut list = HeaderList::default();
            list.extend(headers.iter().copied());
            assert_eq!(list.as_slice(), &headers[..], "{n} headers");
        }
    }
}
