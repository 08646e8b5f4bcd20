//! The change calls: request and preview, list (one page or following the server's cursor),
//! show, and the decisions on a change (approve, deny, withdraw, cancel, roll back). Paging is the
//! one thing here beyond naming a route: the cursor comes from the `Link` header and must move
//! down, or a caller following it would loop for ever.

use super::{ApiClient, ClientError};
use crate::domain::api::{
    ApproveRequest, CancelRequest, ChangeRequest, DenyRequest, Preview, RollbackRequest,
    WithdrawRequest,
};
use crate::domain::change::{Change, ChangeState};
use reqwest::Method;

/// The most changes the server sends in one page of `GET /changes`.
pub const MAX_CHANGES_PAGE: u32 = 500;

/// One page of a list, and the cursor of the next one (`None` on the last page).
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_before: Option<i64>,
}

/// Header that makes `POST /changes` safe to retry.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

impl ApiClient {
    /// `POST /changes/preview`: what would happen, without recording anything.
    pub async fn preview(&self, req: &ChangeRequest) -> Result<Preview, ClientError> {
        self.send_with_body(Method::POST, "/changes/preview", req)
            .await
    }

    /// `POST /changes`: request a change. With an idempotency key a retry returns the change the
    /// first attempt created instead of a second one.
    pub async fn create_change(
        &self,
        req: &ChangeRequest,
        idempotency_key: Option<&str>,
    ) -> Result<Change, ClientError> {
        let mut builder = self
            .request(Method::POST, self.url("/changes", &[])?)
            .json(req);
        if let Some(key) = idempotency_key {
            builder = builder.header(IDEMPOTENCY_KEY, key);
        }
        self.send_json(builder).await
    }

    /// `GET /changes`: one page of changes, newest first, optionally only those in `state`
    /// (`limit` at most [`MAX_CHANGES_PAGE`]; the server's default page without it).
    pub async fn changes(
        &self,
        state: Option<ChangeState>,
        limit: Option<u32>,
    ) -> Result<Vec<Change>, ClientError> {
        Ok(self.changes_page(state, None, limit).await?.items)
    }

    /// `GET /changes?before=…`: the page of changes with ids below `before`, and the cursor of
    /// the page after it, from the `Link` header.
    pub async fn changes_page(
        &self,
        state: Option<ChangeState>,
        before: Option<i64>,
        limit: Option<u32>,
    ) -> Result<Page<Change>, ClientError> {
        let mut query = Vec::new();
        if let Some(state) = state {
            query.push(("state", state.as_str().to_string()));
        }
        if let Some(limit) = limit {
            query.push(("limit", limit.to_string()));
        }
        self.page("/changes", query, before).await
    }

    /// A page of a list read newest first by id (`/changes`, `/calendar/feeds`): `query` plus
    /// `before`, and the cursor of the next page from the `Link` header.
    pub(super) async fn page<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        mut query: Vec<(&str, String)>,
        before: Option<i64>,
    ) -> Result<Page<T>, ClientError> {
        if let Some(before) = before {
            query.push(("before", before.to_string()));
        }
        let resp = self
            .send(self.request(Method::GET, self.url(path, &query)?))
            .await?;
        let next_before = next_cursor(resp.headers());
        let items: Vec<T> = self.read_json(resp).await?;
        // A cursor that does not move down would have a caller following it loop for ever.
        let next_before = next_before.filter(|n| before.is_none_or(|b| *n < b));
        Ok(Page { items, next_before })
    }

    /// Changes newest first, from below `before` (the newest when `None`), following the
    /// server's cursor page by page until `max` are read (every one when `None`). The returned
    /// cursor is where a caller would go on.
    pub async fn changes_following(
        &self,
        state: Option<ChangeState>,
        mut before: Option<i64>,
        max: Option<usize>,
    ) -> Result<Page<Change>, ClientError> {
        let mut items = Vec::new();
        loop {
            let wanted = max.map_or(usize::MAX, |m| m - items.len());
            let limit = u32::try_from(wanted).map_or(MAX_CHANGES_PAGE, |w| w.min(MAX_CHANGES_PAGE));
            let page = self.changes_page(state, before, Some(limit)).await?;
            items.extend(page.items);
            before = page.next_before;
            if before.is_none() || max.is_some_and(|m| items.len() >= m) {
                return Ok(Page {
                    items,
                    next_before: before,
                });
            }
        }
    }

    /// `GET /changes/{id}`.
    pub async fn change(&self, id: i64) -> Result<Change, ClientError> {
        self.get(&format!("/changes/{id}"), &[]).await
    }

    /// `POST /changes/{id}/approve`.
    pub async fn approve(&self, id: i64, req: &ApproveRequest) -> Result<Change, ClientError> {
        self.send_with_body(Method::POST, &format!("/changes/{id}/approve"), req)
            .await
    }

    /// `POST /changes/{id}/deny`.
    pub async fn deny(&self, id: i64, req: &DenyRequest) -> Result<Change, ClientError> {
        self.send_with_body(Method::POST, &format!("/changes/{id}/deny"), req)
            .await
    }

    /// `POST /changes/{id}/withdraw`: the requester takes back their pending change.
    pub async fn withdraw(&self, id: i64, req: &WithdrawRequest) -> Result<Change, ClientError> {
        self.send_with_body(Method::POST, &format!("/changes/{id}/withdraw"), req)
            .await
    }

    /// `POST /changes/{id}/cancel`: cancels a scheduled change (its requester, or an L2+).
    pub async fn cancel(&self, id: i64, req: &CancelRequest) -> Result<Change, ClientError> {
        self.send_with_body(Method::POST, &format!("/changes/{id}/cancel"), req)
            .await
    }

    /// `POST /changes/{id}/rollback`.
    pub async fn rollback(&self, id: i64, req: &RollbackRequest) -> Result<Change, ClientError> {
        self.send_with_body(Method::POST, &format!("/changes/{id}/rollback"), req)
            .await
    }
}

/// The `before` cursor in a `Link: <…?before=N…>; rel="next"` header.
fn next_cursor(headers: &reqwest::header::HeaderMap) -> Option<i64> {
    headers
        .get_all(reqwest::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find(|link| link.contains(r#"rel="next""#))
        .and_then(|link| {
            let target = link.split_once('<')?.1.split_once('>')?.0;
            let query = target.split_once('?')?.1;
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix("before="))?
                .parse()
                .ok()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_cursor_comes_from_the_link_header() {
        use reqwest::header::{HeaderMap, HeaderValue, LINK};
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(LINK, HeaderValue::from_str(v).expect("a header value"));
            next_cursor(&h)
        };
        assert_eq!(
            with(r#"</api/v1/changes?limit=500&before=1234&state=executed>; rel="next""#),
            Some(1234)
        );
        assert_eq!(
            with(r#"</x?before=7>; rel="prev", </x?before=3>; rel="next""#),
            Some(3)
        );
        assert_eq!(with(r#"</x?before=3>; rel="prev""#), None);
        assert_eq!(with(r#"</x?before=nope>; rel="next""#), None);
        assert_eq!(next_cursor(&HeaderMap::new()), None);
    }
}
