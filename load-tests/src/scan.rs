//! Reading the few fields the generator needs out of a JSON event frame
//! without parsing it: at millions of frames per second a full decode
//! would make the generator, not the hub, the thing being measured.
//!
//! The hub's JSON field order is fixed by its types (`type`, `session`,
//! `seq`, `ts`, `event`…), and the generator's own payload is
//! `{"i":…,"t":…,"p":"…"}`, so the first occurrence of each key is the one
//! wanted.

/// Finds `"key":` and parses the unsigned integer after it.
pub fn u64_field(frame: &[u8], key: &[u8]) -> Option<u64> {
    let at = find(frame, key)?;
    let mut n: u64 = 0;
    let mut any = false;
    for &b in &frame[at..] {
        match b {
            b'0'..=b'9' => {
                n = n.checked_mul(10)?.checked_add((b - b'0') as u64)?;
                any = true;
            }
            b' ' if !any => continue,
            _ => break,
        }
    }
    any.then_some(n)
}

/// The position just after the first occurrence of `key`.
pub fn find(haystack: &[u8], key: &[u8]) -> Option<usize> {
    haystack
        .windows(key.len())
        .position(|w| w == key)
        .map(|p| p + key.len())
}

/// What a load-test event frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    /// The hub's sequence number.
    pub seq: u64,
    /// The generator's event number.
    pub i: u64,
    /// Intended send time, ns on the generator's clock.
    pub t: u64,
}

/// Reads a probe out of an `event` frame (or a compact event frame) of a
/// generator `custom` event, or of a `state` event whose topic the
/// generator set to `i:t`.
pub fn probe(frame: &[u8]) -> Option<Probe> {
    let seq = if frame.starts_with(br#"{"type":"event""#) {
        u64_field(frame, br#""seq":"#)?
    } else if frame.starts_with(br#"{"e":"#) {
        u64_field(frame, br#""q":"#)?
    } else {
        return None;
    };
    if let Some(data) = find(frame, br#""data":{"#) {
        let rest = &frame[data..];
        return Some(Probe {
            seq,
            i: u64_field(rest, br#""i":"#)?,
            t: u64_field(rest, br#""t":"#)?,
        });
    }
    let topic = find(frame, br#""current_topic":"#)?;
    let rest = &frame[topic..];
    let i = u64_field(rest, br#"""#)?;
    let colon = rest.iter().position(|&b| b == b':')?;
    let t = u64_field(&rest[colon..], b":")?;
    Some(Probe { seq, i, t })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_custom_and_state_probes() {
        let custom = br#"{"type":"event","session":"0192f5c0-7d3e-7b1a-9c4e-2f6a8d1b3c5e","seq":42,"ts":1,"event":{"kind":"custom","name":"b","audience":"all","data":{"i":7,"t":123456789,"p":"xx"},"from":"r"}}"#;
        assert_eq!(
            probe(custom),
            Some(Probe {
                seq: 42,
                i: 7,
                t: 123456789
            })
        );
        let state = br#"{"type":"event","session":"s","seq":9,"ts":1,"event":{"kind":"state","state":{"current_slide":1,"presentation_mode":"auto","is_speaking":false,"awaiting_questions":false,"operator_connected":false,"current_topic":"31:5000","last_interaction":0}}}"#;
        assert_eq!(
            probe(state),
            Some(Probe {
                seq: 9,
                i: 31,
                t: 5000
            })
        );
        let compact = br#"{"e":3,"q":42,"kind":"custom","name":"b","data":{"i":7,"t":123456789,"p":"xx"},"from":"r"}"#;
        assert_eq!(
            probe(compact),
            Some(Probe {
                seq: 42,
                i: 7,
                t: 123456789
            })
        );
        assert_eq!(probe(br#"{"type":"ack","id":"x"}"#), None);
    }
}
