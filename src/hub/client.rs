//! A connection's own state, owned by its task: what it joined, its
//! token buckets and connection slots. The frames it sends are handled
//! in `dispatch.rs` and the frame families under `frames/`.

use std::sync::Arc;

use super::error::{HubError, refuse};
use crate::auth::limits::{ConnLimiter, Slot};
use crate::connection::ConnHandle;
use crate::identity::Identity;
use crate::ids::SessionId;
use crate::protocol::{CloseCode, ErrorCode};
use crate::session::Session;
use crate::stream::Origin;

/// Per-connection state, owned by the connection's task.
#[derive(Debug)]
pub struct Client {
    pub conn: Arc<ConnHandle>,
    /// Sessions this connection has joined (one for renderers and
    /// participants, any number for operators).
    pub joined: Vec<Arc<Session>>,
    /// Display name given at join (participants).
    pub display_name: Option<String>,
    pub bad_frames: u32,
    /// This connection's token buckets.
    pub limiter: ConnLimiter,
    /// Connection slots (address, tenant) held until the connection ends.
    pub slots: Vec<Slot>,
}

/// What the connection task should do after a frame.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Next {
    Continue,
    Close(CloseCode),
}

impl Client {
    pub fn new(conn: Arc<ConnHandle>, limiter: ConnLimiter) -> Client {
        Client {
            conn,
            joined: Vec::new(),
            display_name: None,
            bad_frames: 0,
            limiter,
            slots: Vec::new(),
        }
    }

    pub fn identity(&self) -> Result<&Identity, HubError> {
        self.conn
            .identity()
            .ok_or_else(|| refuse(ErrorCode::Unauthorized, "authenticate first"))
    }

    pub fn joined(&self, session: SessionId) -> Result<Arc<Session>, HubError> {
        self.joined
            .iter()
            .find(|s| s.id == session)
            .cloned()
            .ok_or_else(|| refuse(ErrorCode::NotJoined, "join the session first"))
    }

    pub fn origin(&self, client_id: Option<&str>) -> Origin {
        let id = self.conn.identity();
        Origin {
            sender: id.map(|i| i.subject.clone()).unwrap_or_default(),
            role: id.map(|i| i.role),
            client_id: client_id.map(str::to_owned),
            fence: None,
        }
    }
}
