//! Every request message a gateway decodes from a client, on arbitrary bytes: errors are
//! fine, panics and hangs are not. Whatever decodes must encode again.
#![no_main]

use alertmesh_proto::v1;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fn round_trip<M: Message + Default>(data: &[u8]) {
    if let Ok(m) = M::decode(data) {
        let again = M::decode(m.encode_to_vec().as_slice()).expect("a decoded message re-encodes");
        assert_eq!(again.encoded_len(), m.encoded_len());
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<v1::SubscribeRequest>(data);
    round_trip::<v1::CommitCursorRequest>(data);
    round_trip::<v1::FetchRequest>(data);
    round_trip::<v1::IssueCredentialRequest>(data);
    round_trip::<v1::ListCredentialsRequest>(data);
    round_trip::<v1::RevokeCredentialRequest>(data);
});
