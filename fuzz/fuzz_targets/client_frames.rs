//! Client frames as the gateway receives them: a data frame's payload in
//! either codec, decoded and then put through the field checks the frame's
//! family runs (`eva_hub::hub::check_frame`). Nothing may panic; an error
//! is the only answer to bad input.
//!
//! A frame that passes its checks must also survive the trip back: encoded
//! by the same codec and decoded again, it is the same frame. The hub's
//! Rust client (`eva_hub::client`) sends frames with that encoder.

#![no_main]

use eva_hub::config::Settings;
use eva_hub::hub::check_frame;
use eva_hub::protocol::{ClientFrame, Codec, DecodeError};
use libfuzzer_sys::fuzz_target;

fn max_text() -> usize {
    static MAX: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *MAX.get_or_init(|| Settings::defaults().session.max_text_bytes)
}

fn check(codec: Codec, payload: &[u8]) -> Option<ClientFrame> {
    let frame = match codec.decode_client(payload) {
        Ok(frame) => frame,
        Err(e) => {
            // The reason reaches the client in an `error` frame.
            let text = e.to_string();
            if let DecodeError::UnknownType(kind) = &e {
                assert!(kind.len() <= 64, "unknown type echoed unbounded");
            }
            assert!(!text.is_empty());
            return None;
        }
    };
    // What dispatch reads of every frame before routing it.
    let _ = (frame.name(), frame.client_id(), frame.session());
    if let Err(e) = check_frame(&frame, max_text()) {
        let _ = (e.code(), e.client_message());
        return None;
    }
    let again = codec
        .decode_client(&codec.encode_payload(&frame))
        .unwrap_or_else(|e| panic!("a valid {codec:?} frame does not decode once re-encoded: {e}"));
    assert_eq!(again, frame, "{codec:?} round trip changed the frame");
    Some(frame)
}

fuzz_target!(|data: &[u8]| {
    let json = check(Codec::Json, data);
    check(Codec::MsgPack, data);
    // The same frame in the other codec, so MessagePack's decoder also
    // sees every structure the JSON seeds reach.
    if let Some(frame) = json {
        let packed = Codec::MsgPack.encode_payload(&frame);
        let back = check(Codec::MsgPack, &packed)
            .unwrap_or_else(|| panic!("a valid frame refused once sent as MessagePack: {frame:?}"));
        assert_eq!(back, frame, "JSON and MessagePack disagree");
    }
});
