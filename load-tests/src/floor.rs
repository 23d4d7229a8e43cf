//! The floor: the least a server must do to deliver the load scenarios'
//! events, so that the hub's figures can be read as a ratio to it.
//!
//! It speaks just enough of the protocol for the generator (`/healthz`,
//! `POST /v1/sessions`, the WebSocket upgrade, `join`, `publish`,
//! `emergency_stop`) and no more: no tenants, no validation, no history, no
//! queues, no timers. For each `publish` it builds the event frame once, in
//! the same layout and size as the hub's (full or compact), and writes it
//! to every subscriber's socket with one `write` each, in a plain loop on
//! one thread. An emergency stop is written to the renderer at once. What
//! the hub costs above this is its own work: sequencing, fan-out
//! bookkeeping, buffering, metrics.
//!
//! A write that the socket does not take whole is kept and finished when
//! the socket is writable again, so nothing is lost or reordered; in the
//! scenarios' range that path is rare.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::ErrorKind;
use std::rc::Rc;

use anyhow::{Context, bail};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::scan::find;

/// One client socket; the reader task owns the reads, anyone may write.
struct Conn {
    stream: TcpStream,
    /// Bytes a write left over, finished by the connection's flusher.
    pending: RefCell<Vec<u8>>,
    flush: Notify,
    subject: String,
}

impl Conn {
    /// Writes a whole WebSocket frame, in order after anything pending.
    fn write(&self, frame: &[u8]) {
        let mut pending = self.pending.borrow_mut();
        if !pending.is_empty() {
            pending.extend_from_slice(frame);
            return;
        }
        match self.stream.try_write(frame) {
            Ok(n) if n == frame.len() => {}
            Ok(n) => {
                pending.extend_from_slice(&frame[n..]);
                self.flush.notify_one();
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                pending.extend_from_slice(frame);
                self.flush.notify_one();
            }
            Err(_) => {} // the reader sees the socket close
        }
    }

    async fn flusher(self: Rc<Self>) {
        loop {
            self.flush.notified().await;
            loop {
                if self.pending.borrow().is_empty() {
                    break;
                }
                if self.stream.writable().await.is_err() {
                    return;
                }
                let mut pending = self.pending.borrow_mut();
                match self.stream.try_write(&pending) {
                    Ok(n) => {
                        pending.drain(..n);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
        }
    }
}

#[derive(Default)]
struct Session {
    alias: u64,
    seq: u64,
    renderer: Option<Rc<Conn>>,
    subscribers: Vec<(Rc<Conn>, bool)>,
}

#[derive(Default)]
struct Floor {
    sessions: RefCell<HashMap<String, Session>>,
    next_alias: Cell<u64>,
}

/// Serves until the process ends. Run it on a current-thread runtime.
pub async fn serve(listener: TcpListener) -> anyhow::Result<()> {
    let floor = Rc::new(Floor::default());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let floor = floor.clone();
        tokio::task::spawn_local(async move {
            let _ = connection(floor, stream).await;
        });
    }
}

async fn connection(floor: Rc<Floor>, stream: TcpStream) -> anyhow::Result<()> {
    let mut buf = Vec::with_capacity(4096);
    // Just past the blank line that ends the request head.
    let head_end = loop {
        read_some(&stream, &mut buf).await?;
        if let Some(p) = find(&buf, b"\r\n\r\n") {
            break p;
        }
        if buf.len() > 16 * 1024 {
            bail!("request head too large");
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let request_line = head.lines().next().unwrap_or_default().to_owned();
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    if request_line.starts_with("GET /healthz") {
        return respond(&stream, "200 OK", "ok").await;
    }
    if request_line.starts_with("POST /v1/sessions") {
        let id = uuid::Uuid::now_v7().to_string();
        let alias = floor.next_alias.get() + 1;
        floor.next_alias.set(alias);
        floor.sessions.borrow_mut().insert(
            id.clone(),
            Session {
                alias,
                ..Session::default()
            },
        );
        return respond(&stream, "201 Created", &format!(r#"{{"id":"{id}"}}"#)).await;
    }
    let Some(key) = header("sec-websocket-key") else {
        return respond(&stream, "404 Not Found", "").await;
    };
    let subject = header("authorization")
        .and_then(|a| a.rsplit(':').next().map(str::to_owned))
        .unwrap_or_default();
    let protocol = header("sec-websocket-protocol")
        .and_then(|p| p.split(',').next().map(|p| p.trim().to_owned()))
        .unwrap_or_else(|| "eva.v1.json".into());
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    write_all(&stream, answer.as_bytes()).await?;
    buf.drain(..head_end);
    let conn = Rc::new(Conn {
        stream,
        pending: RefCell::new(Vec::new()),
        flush: Notify::new(),
        subject,
    });
    let flusher = tokio::task::spawn_local(conn.clone().flusher());
    let result = frames(&floor, &conn, buf).await;
    flusher.abort();
    // Forget the connection everywhere.
    for s in floor.sessions.borrow_mut().values_mut() {
        s.subscribers.retain(|(c, _)| !Rc::ptr_eq(c, &conn));
        if s.renderer.as_ref().is_some_and(|r| Rc::ptr_eq(r, &conn)) {
            s.renderer = None;
        }
    }
    result
}

/// Reads client frames (masked, unfragmented text) and acts on them.
async fn frames(floor: &Floor, conn: &Rc<Conn>, mut buf: Vec<u8>) -> anyhow::Result<()> {
    let mut out = Vec::with_capacity(512);
    loop {
        while let Some((payload, used, opcode)) = parse_frame(&mut buf)? {
            if opcode == 0x8 {
                return Ok(()); // close
            }
            if opcode == 0x1 {
                handle(floor, conn, &payload, &mut out);
            }
            buf.drain(..used);
        }
        read_some(&conn.stream, &mut buf).await?;
    }
}

fn handle(floor: &Floor, conn: &Rc<Conn>, text: &[u8], out: &mut Vec<u8>) {
    let Some(session_id) = string_after(text, br#""session":""#) else {
        return;
    };
    let mut sessions = floor.sessions.borrow_mut();
    let Some(s) = sessions.get_mut(session_id) else {
        return;
    };
    if text.starts_with(br#"{"type":"join""#) {
        let compact = find(text, br#""compact":true"#).is_some();
        if conn.subject.starts_with('r') && s.renderer.is_none() {
            s.renderer = Some(conn.clone());
        } else {
            s.subscribers.push((conn.clone(), compact));
        }
        let alias = if compact {
            format!(r#","alias":{}"#, s.alias)
        } else {
            String::new()
        };
        let joined =
            format!(r#"{{"type":"joined","session":"{session_id}","role":"participant"{alias}}}"#);
        let snapshot = format!(
            r#"{{"type":"snapshot","session":"{session_id}","epoch":"f100f100f100f100","seq":{},"status":"active"}}"#,
            s.seq
        );
        for t in [joined, snapshot] {
            ws_frame(out, t.as_bytes());
            conn.write(out);
        }
    } else if text.starts_with(br#"{"type":"publish""#) {
        // `"name":…,"data":{…}` as sent, up to the frame's closing brace.
        let Some(name) = find(text, br#""name":"#) else {
            return;
        };
        let fields = &text[name - br#""name":"#.len()..text.len() - 1];
        s.seq += 1;
        let ts = chrono::Utc::now().timestamp_millis();
        let from = &conn.subject;
        let mut full = Vec::new();
        let mut compact = Vec::new();
        for (sub, is_compact) in &s.subscribers {
            let frame = if *is_compact { &mut compact } else { &mut full };
            if frame.is_empty() {
                let mut body = Vec::with_capacity(fields.len() + 128);
                if *is_compact {
                    body.extend_from_slice(
                        format!(r#"{{"e":{},"q":{},"kind":"custom","#, s.alias, s.seq).as_bytes(),
                    );
                    body.extend_from_slice(fields);
                    body.extend_from_slice(format!(r#","from":"{from}"}}"#).as_bytes());
                } else {
                    body.extend_from_slice(
                        format!(
                            r#"{{"type":"event","session":"{session_id}","seq":{},"ts":{ts},"event":{{"kind":"custom","#,
                            s.seq
                        )
                        .as_bytes(),
                    );
                    body.extend_from_slice(fields);
                    body.extend_from_slice(format!(r#","from":"{from}"}}}}"#).as_bytes());
                }
                ws_frame(frame, &body);
            }
            sub.write(frame);
        }
    } else if text.starts_with(br#"{"type":"emergency_stop""#)
        && let Some(r) = &s.renderer
    {
        let id = uuid::Uuid::now_v7();
        let urgent = format!(
            r#"{{"type":"urgent","session":"{session_id}","intervention_id":"{id}","command":{{"action":"emergency_stop"}}}}"#
        );
        ws_frame(out, urgent.as_bytes());
        r.write(out);
    }
}

/// An unmasked server text frame around `payload`, into `out`.
fn ws_frame(out: &mut Vec<u8>, payload: &[u8]) {
    out.clear();
    out.push(0x81);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= u16::MAX as usize => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

/// One complete client frame at the start of `buf`: its unmasked payload,
/// the bytes it used and its opcode; `None` until it is all there.
fn parse_frame(buf: &mut [u8]) -> anyhow::Result<Option<(Vec<u8>, usize, u8)>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let opcode = buf[0] & 0x0f;
    if buf[1] & 0x80 == 0 {
        bail!("client frames are masked");
    }
    let (len, mut at) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (
            u64::from_be_bytes(buf[2..10].try_into().context("length")?) as usize,
            10,
        ),
        126 | 127 => return Ok(None),
        n => (n as usize, 2),
    };
    if buf.len() < at + 4 + len {
        return Ok(None);
    }
    let mask = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
    at += 4;
    let payload = buf[at..at + len]
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ mask[i % 4])
        .collect();
    Ok(Some((payload, at + len, opcode)))
}

fn string_after<'a>(b: &'a [u8], key: &[u8]) -> Option<&'a str> {
    let at = find(b, key)?;
    let end = b[at..].iter().position(|&c| c == b'"')?;
    std::str::from_utf8(&b[at..at + end]).ok()
}

async fn read_some(stream: &TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<()> {
    loop {
        stream.readable().await?;
        let mut chunk = [0u8; 16 * 1024];
        match stream.try_read(&mut chunk) {
            Ok(0) => bail!("closed"),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(());
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> anyhow::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

async fn respond(stream: &TcpStream, status: &str, body: &str) -> anyhow::Result<()> {
    let answer = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    write_all(stream, answer.as_bytes()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_through_the_parser() {
        let payload = br#"{"type":"join","session":"s"}"#;
        let mut out = Vec::new();
        ws_frame(&mut out, payload);
        // Mask it as a client would.
        let mask = [1u8, 2, 3, 4];
        let mut masked = vec![out[0], out[1] | 0x80];
        masked.extend_from_slice(&mask);
        masked.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        let (p, used, op) = parse_frame(&mut masked).unwrap().unwrap();
        assert_eq!((p.as_slice(), used, op), (&payload[..], masked.len(), 1));
        assert!(parse_frame(&mut masked[..5]).unwrap().is_none());
    }
}
