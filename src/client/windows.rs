//! The calls about when changes may run: the calendar of windows, what is open now or at a given
//! time, the iCalendar export and its feed URLs, freezes, and the pause that stops every change.
//! They share the window vocabulary of [`crate::domain::window`] and [`crate::domain::calendar`],
//! and the dashboard's calendar pane is their main user.

use super::changes::Page;
use super::{ApiClient, ClientError};
use crate::domain::api::{Calendar, FreezeRequest, PauseRequest, WindowStatus};
use crate::domain::calendar::{CalendarState, Feed, FeedCreated, FeedRequest};
use crate::domain::window::{Freeze, Pause};
use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::Method;

/// The most feeds the server sends in one page of `GET /calendar/feeds`.
pub const MAX_FEEDS_PAGE: u32 = 500;

impl ApiClient {
    /// `GET /windows`: the calendar between two instants.
    pub async fn calendar(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Calendar, ClientError> {
        let query = [
            ("from", from.to_rfc3339_opts(SecondsFormat::Secs, true)),
            ("to", to.to_rfc3339_opts(SecondsFormat::Secs, true)),
        ];
        self.get("/windows", &query).await
    }

    /// `GET /windows/current`: what is open now, what opens next, any freeze or pause.
    pub async fn current_window(&self) -> Result<WindowStatus, ClientError> {
        self.get("/windows/current", &[]).await
    }

    /// `GET /windows/at?time=…`: what the policy would say at `time` (RFC 3339, or `now`); the
    /// server checks the text and says what is wrong with it.
    pub async fn window_at(&self, time: &str) -> Result<CalendarState, ClientError> {
        self.get("/windows/at", &[("time", time.to_string())]).await
    }

    /// `GET /calendar.ics`: the iCalendar feed, as the server encodes it.
    pub async fn calendar_ics(&self) -> Result<String, ClientError> {
        let req = self.request(Method::GET, self.url("/calendar.ics", &[])?);
        let resp = self.send(req).await?;
        resp.text().await.map_err(|e| self.transport(&e))
    }

    /// `POST /calendar/feeds`: a feed URL for calendar apps; its secret is in this answer only.
    pub async fn create_calendar_feed(
        &self,
        req: &FeedRequest,
    ) -> Result<FeedCreated, ClientError> {
        self.send_with_body(Method::POST, "/calendar/feeds", req)
            .await
    }

    /// `GET /calendar/feeds`: the first page (the newest feeds, the server's default page).
    pub async fn calendar_feeds(&self) -> Result<Vec<Feed>, ClientError> {
        Ok(self.calendar_feeds_page(None, None).await?.items)
    }

    /// `GET /calendar/feeds?before=…`: the page of feeds with ids below `before`, newest first
    /// (`limit` at most [`MAX_FEEDS_PAGE`]), and the cursor of the next page from the `Link`
    /// header.
    pub async fn calendar_feeds_page(
        &self,
        before: Option<i64>,
        limit: Option<u32>,
    ) -> Result<Page<Feed>, ClientError> {
        let query = limit
            .map(|l| ("limit", l.min(MAX_FEEDS_PAGE).to_string()))
            .into_iter()
            .collect();
        self.page("/calendar/feeds", query, before).await
    }

    /// `DELETE /calendar/feeds/{id}`.
    pub async fn revoke_calendar_feed(&self, id: i64) -> Result<Feed, ClientError> {
        let req = self.request(
            Method::DELETE,
            self.url(&format!("/calendar/feeds/{id}"), &[])?,
        );
        self.send_json(req).await
    }

    /// `POST /freezes`.
    pub async fn create_freeze(&self, req: &FreezeRequest) -> Result<Freeze, ClientError> {
        self.send_with_body(Method::POST, "/freezes", req).await
    }

    /// `DELETE /freezes/{id}`.
    pub async fn delete_freeze(&self, id: i64) -> Result<(), ClientError> {
        self.send_empty(Method::DELETE, &format!("/freezes/{id}"))
            .await
    }

    /// `POST /pause`: stop all changes until someone resumes them.
    pub async fn pause(&self, req: &PauseRequest) -> Result<Pause, ClientError> {
        self.send_with_body(Method::POST, "/pause", req).await
    }

    /// `DELETE /pause`: resume changes.
    pub async fn resume(&self) -> Result<(), ClientError> {
        self.send_empty(Method::DELETE, "/pause").await
    }
}
