//! The gRPC codec of `alertmesh.v1`: prost's, except that the encoder reserves room for
//! the whole message before writing it, and the decoder refuses a message that would
//! expand beyond [`crate::bound::MAX_DECODED_BYTES`] once decoded.
//!
//! tonic's encode buffer starts at 8 KiB and prost writes field by field, so a 1 MiB
//! `AlertBatch` would otherwise grow the buffer by repeated reallocation, copying what
//! was written each time, for every batch of every subscriber. On the receiving side,
//! tonic bounds the bytes of a message but not what they decode into (see
//! [`crate::bound`]): a peer gateway, a client or a server is checked before prost
//! allocates.

use std::marker::PhantomData;

use prost::bytes::Buf;
use prost::Message;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;
use tonic_prost::ProstCodec;

/// [`ProstCodec`] with a [`ReservingEncoder`] and a [`BoundedDecoder`]; named by the
/// generated services.
#[derive(Debug, Clone, Copy)]
pub struct MeshCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for MeshCodec<T, U> {
    fn default() -> Self {
        MeshCodec(PhantomData)
    }
}

impl<T, U> Codec for MeshCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + prost::Name + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ReservingEncoder<T>;
    type Decoder = BoundedDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ReservingEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        BoundedDecoder(ProstCodec::<T, U>::default().decoder())
    }
}

/// prost's decoder, after [`crate::bound::check`] of the message's bytes.
#[derive(Debug)]
pub struct BoundedDecoder<U>(<ProstCodec<(), U> as Codec>::Decoder)
where
    U: Message + Default + Send + 'static;

impl<U> Decoder for BoundedDecoder<U>
where
    U: Message + prost::Name + Default + Send + 'static,
{
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let len = buf.remaining();
        // tonic hands over one contiguous buffer; were it ever in pieces, they are joined.
        let refused = match buf.chunk().get(..len) {
            Some(wire) => crate::bound::check::<U>(wire),
            None => {
                let wire = buf.copy_to_bytes(len);
                crate::bound::check::<U>(&wire).map_err(refusal)?;
                return U::decode(wire)
                    .map(Some)
                    .map_err(|e| Status::internal(e.to_string()));
            }
        };
        refused.map_err(refusal)?;
        self.0.decode(buf)
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}

fn refusal(e: crate::bound::Refused) -> Status {
    match e {
        crate::bound::Refused::TooLarge { .. } => Status::resource_exhausted(e.to_string()),
        crate::bound::Refused::Malformed { .. } => Status::internal(e.to_string()),
    }
}

/// Encodes a prost message into a buffer grown once to the message's size.
#[derive(Debug, Clone, Copy)]
pub struct ReservingEncoder<T>(PhantomData<T>);

impl<T: Message> Encoder for ReservingEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.reserve(item.encoded_len());
        // `encode` would measure the message again to check for room; the buffer grows, and
        // now has it.
        item.encode_raw(buf);
        Ok(())
    }
}
