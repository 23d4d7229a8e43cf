//! Answers to frames that carry an `id`: an `ack` right away for what
//! needs no commit, or one queued with the rows and sent once they commit
//! (ack-after-commit), and the original outcome for a resend.

use std::sync::Arc;

use super::client::Client;
use super::core::Hub;
use super::error::HubError;
use super::rows::webhook_rows;
use super::validate::{dedupe, live};
use crate::connection::ConnHandle;
use crate::ids::SessionId;
use crate::protocol::frames::ClientMsgId;
use crate::protocol::model::Event;
use crate::protocol::{ErrorCode, ServerFrame};
use crate::session::{Seen, Session, ref_id};
use crate::store::Row;
use crate::store::writer::{Ack, Order, Reservation};
use crate::stream::Published;

/// An ack that completes once rows commit: the encoded `ack` frame, or an
/// `internal` error frame if the commit fails for good.
pub(crate) fn commit_ack(conn: &ConnHandle, frame: &crate::protocol::ServerFrame) -> Ack {
    let mut err = crate::protocol::ServerFrame::error(
        ErrorCode::Internal,
        "the hub failed to store this; retry",
    );
    if let (
        crate::protocol::ServerFrame::Ack { id, session, .. },
        crate::protocol::ServerFrame::Error {
            id: eid,
            session: es,
            retry_after_ms,
            ..
        },
    ) = (frame, &mut err)
    {
        *eid = Some(id.clone());
        *es = *session;
        *retry_after_ms = Some(1000);
    }
    Ack::Frame {
        outbox: Arc::downgrade(&conn.outbox),
        frame: conn.codec.frame(frame),
        on_error: conn.codec.frame(&err),
    }
}

impl Hub {
    /// Acks a frame whose effect needs no commit, once the event it
    /// produced has been handed to the connections (so the sender sees
    /// the event before the ack, when its view includes it).
    pub(crate) async fn ack_now(
        &self,
        client: &Client,
        id: Option<ClientMsgId>,
        session: &Session,
        p: &Published,
    ) {
        if let Some(id) = id {
            session.settled().await;
            client.conn.send(&ServerFrame::Ack {
                id,
                session: Some(session.id),
                seq: Some(p.seq),
                ref_id: ref_id(&p.event),
                duplicate: false,
            });
        }
    }

    /// Answers a resend with the original outcome, once everything queued
    /// before it has committed (an empty submission is a barrier: the
    /// writer commits in order).
    pub(crate) fn duplicate_ack(
        &self,
        client: &Client,
        session: SessionId,
        id: ClientMsgId,
        seen: Seen,
    ) {
        let frame = ServerFrame::Ack {
            id,
            session: Some(session),
            seq: Some(seen.seq),
            ref_id: seen.ref_id,
            duplicate: true,
        };
        if self
            .writer
            .submit(
                Order::Session(session),
                Vec::new(),
                Some(commit_ack(&client.conn, &frame)),
            )
            .is_err()
        {
            client.conn.send(&frame);
        }
    }

    /// Publishes a must-keep event: reserve backlog room, publish (unless
    /// the id is a resend), queue the rows, ack after they commit.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn publish_kept(
        &self,
        client: &Client,
        session: &Arc<Session>,
        id: &str,
        event: Event,
        rows: usize,
        bytes: usize,
        make_rows: impl FnOnce(&Published) -> Vec<Row>,
    ) -> Result<(), HubError> {
        let reservation = self.writer.reserve(rows, 128 * rows + bytes)?;
        let sender = client.origin(None).sender;
        let published = self
            .publish_checked(session, client.origin(Some(id)), |g| {
                live(g)?;
                dedupe(g, &sender, Some(id))?;
                Ok(event.clone())
            })
            .await;
        let p = match published {
            Ok(p) => p,
            Err(HubError::Duplicate(seen)) => {
                return self
                    .store_again(client, session, id, seen, reservation, make_rows)
                    .await;
            }
            Err(e) => return Err(e),
        };
        let rows = make_rows(&p);
        self.finish_kept(client, session, Some(id.to_owned()), &p, reservation, rows)
            .await;
        Ok(())
    }

    /// A resend of a kept frame the session has already sequenced. The
    /// first copy's rows may never have committed: the node that
    /// published it can have died in between (the stream, in Redis,
    /// outlives it), so the duplicate `ack` must not rest on them. While
    /// the original event is in the replica's history its rows are
    /// queued again, built from that event (the same ids, so a row that
    /// did commit is kept once), and the ack follows their commit. Its
    /// webhook rows are not: they carry fresh `webhook-id`s, and a
    /// second delivery would not look like a retry. An event older than
    /// the history is answered once everything queued before has
    /// committed, as before.
    pub(crate) async fn store_again(
        &self,
        client: &Client,
        session: &Session,
        id: &str,
        seen: Seen,
        reservation: Reservation,
        make_rows: impl FnOnce(&Published) -> Vec<Row>,
    ) -> Result<(), HubError> {
        let original = session
            .lock()
            .history
            .iter()
            .find(|h| h.seq == seen.seq && h.origin.client_id.as_deref() == Some(id))
            .cloned();
        let Some(original) = original else {
            return Err(HubError::Duplicate(seen));
        };
        let ack = commit_ack(
            &client.conn,
            &ServerFrame::Ack {
                id: id.to_owned(),
                session: Some(session.id),
                seq: Some(seen.seq),
                ref_id: seen.ref_id,
                duplicate: true,
            },
        );
        reservation.submit(Order::Session(session.id), make_rows(&original), Some(ack));
        Ok(())
    }

    /// Queues a kept frame's rows with its ack, which is sent once they
    /// commit. The rows wait until the event has been handed to the
    /// connections, so the ack can never overtake the event.
    pub(crate) async fn finish_kept(
        &self,
        client: &Client,
        session: &Session,
        id: Option<ClientMsgId>,
        p: &Published,
        reservation: Reservation,
        rows: Vec<Row>,
    ) {
        session.settled().await;
        let ack = id.map(|id| {
            commit_ack(
                &client.conn,
                &ServerFrame::Ack {
                    id,
                    session: Some(session.id),
                    seq: Some(p.seq),
                    ref_id: ref_id(&p.event),
                    duplicate: false,
                },
            )
        });
        let mut rows = rows;
        rows.extend(webhook_rows(session, p, false));
        reservation.submit(Order::Session(session.id), rows, ack);
    }
}
