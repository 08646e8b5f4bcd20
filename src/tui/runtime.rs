//! The event loop: terminal input, server results, the event stream and a 1 Hz tick become
//! messages for the reducer; its effects become requests on tokio tasks. Draws only when the
//! state is dirty, inside a synchronized update.

use crate::client::{ApiClient, ClientError};
use crate::domain::api::STREAM_READY;
use crate::tui::app::{Effect, Msg, State, Tone, update};
use crate::tui::theme::Theme;
use crate::tui::view;
use chrono::{DateTime, Utc};
use crossterm::event::{Event as TermEvent, EventStream, KeyEventKind};
use crossterm::terminal::{BeginSynchronizedUpdate, EndSynchronizedUpdate};
use futures::StreamExt;
use std::time::Duration;
use tokio::sync::mpsc;

pub struct Options {
    pub theme: Theme,
    pub keymap: crate::tui::keymap::Keymap,
    /// Shown on the message line at start (e.g. a bad key in the config file).
    pub warnings: Vec<String>,
    /// A first message, e.g. the demo's notes.
    pub notice: Option<String>,
    /// Capture the mouse (clicks and the wheel); `mouse = false` in the config leaves it to
    /// the terminal, for selecting text.
    pub mouse: bool,
    /// `--read-only` or `read_only = true`: keys that act are refused (an observer's dashboard
    /// is read-only whatever this says).
    pub read_only: bool,
}

/// Runs the dashboard until the user quits. The terminal is restored on every way out.
pub async fn run(client: ApiClient, options: Options) -> color_eyre::Result<()> {
    let mut terminal = ratatui::try_init()?;
    let _mouse = options.mouse.then(MouseCapture::start).transpose()?;
    let result = event_loop(&mut terminal, client, options).await;
    // Restoring a terminal that is gone fails; the loop's own error says more.
    let restored = ratatui::try_restore();
    result.and(restored.map_err(Into::into))
}

/// The server's clock as an offset from ours, so countdowns match the server (which may run on
/// a simulated clock).
async fn clock_offset(client: &ApiClient) -> Result<chrono::Duration, ClientError> {
    let health = client.health().await?;
    Ok(health.now - Utc::now())
}

async fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    client: ApiClient,
    options: Options,
) -> color_eyre::Result<()> {
    let offset = clock_offset(&client).await.unwrap_or_default();
    let now = move || -> DateTime<Utc> { Utc::now() + offset };
    let mut state = State::new(client.server(), now());
    state.warnings = options.warnings;
    state.keymap = options.keymap;
    state.read_only = options.read_only;
    if let Ok(size) = terminal.size() {
        state.size = (size.width, size.height);
    }
    if let Some(n) = options.notice {
        state.message = Some((Tone::Info, n));
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
    // Aborted on every way out of this function, an error included.
    let _stream_task = AbortOnDrop(tokio::spawn(follow_events(client.clone(), tx.clone())));
    for e in state.initial_effects() {
        carry_out(&client, e, &tx);
    }
    let mut keys = EventStream::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;

    loop {
        if state.dirty {
            // A terminal that cannot be written to is gone (an SSH drop): nothing to stay for.
            draw(terminal, &state, &options.theme)?;
            state.dirty = false;
        }
        if state.quit {
            return Ok(());
        }
        let msg = tokio::select! {
            ev = keys.next() => match ev {
                Some(Ok(TermEvent::Key(k))) if k.kind != KeyEventKind::Release => Msg::Key(k),
                Some(Ok(TermEvent::Resize(w, h))) => Msg::Resize(w, h),
                Some(Ok(TermEvent::Mouse(m))) => Msg::Mouse(m),
                Some(Ok(_)) => continue,
                // The terminal is gone (SSH dropped): nothing left to draw on.
                Some(Err(_)) | None => Msg::Terminate,
            },
            Some(m) = rx.recv() => m,
            _ = tick.tick() => Msg::Tick(now()),
            _ = term.recv() => Msg::Terminate,
            _ = hup.recv() => Msg::Terminate,
        };
        for e in update(&mut state, msg) {
            carry_out(&client, e, &tx);
        }
    }
}

/// An effect: a request on a task of its own, or, for the clipboard, an escape sequence written
/// here, between frames, so it never lands inside one.
fn carry_out(client: &ApiClient, effect: Effect, tx: &mpsc::UnboundedSender<Msg>) {
    match effect {
        Effect::Copy(text) => {
            // A failure only means the terminal is gone, which the loop finds out on its own.
            let _ = crossterm::execute!(
                std::io::stdout(),
                crossterm::clipboard::CopyToClipboard::to_clipboard_from(text)
            );
        }
        other => spawn_effect(client, other, tx),
    }
}

/// Mouse capture, ended on every way out (a panic included: it ends as the stack unwinds), so
/// the terminal is never left reporting mouse moves as text.
struct MouseCapture;

impl MouseCapture {
    fn start() -> std::io::Result<MouseCapture> {
        crossterm::execute!(std::io::stdout(), crossterm::event::EnableMouseCapture)?;
        Ok(MouseCapture)
    }
}

impl Drop for MouseCapture {
    fn drop(&mut self) {
        let _ = crossterm::execute!(std::io::stdout(), crossterm::event::DisableMouseCapture);
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn draw(
    terminal: &mut ratatui::DefaultTerminal,
    state: &State,
    theme: &Theme,
) -> std::io::Result<()> {
    // Synchronized updates: the terminal shows the whole frame at once, never half of it.
    crossterm::execute!(std::io::stdout(), BeginSynchronizedUpdate)?;
    terminal.draw(|f| view::draw(f, state, theme))?;
    crossterm::execute!(std::io::stdout(), EndSynchronizedUpdate)?;
    Ok(())
}

/// A failure in the server's own words: its message says what to do; the status code and the
/// error kind are for programs, not for the person at the dashboard.
fn text<T>(r: Result<T, ClientError>) -> Result<T, String> {
    r.map_err(|e| match e {
        ClientError::Api { message, .. } => message,
        other => other.to_string(),
    })
}

/// Carries out one effect on its own task; the result comes back as a message.
pub fn spawn_effect(client: &ApiClient, effect: Effect, tx: &mpsc::UnboundedSender<Msg>) {
    let client = client.clone();
    let tx = tx.clone();
    tokio::spawn(async move {
        let msg = match effect {
            Effect::LoadMe => Msg::Me(text(client.me().await)),
            Effect::LoadActions => Msg::Actions(text(client.actions().await)),
            Effect::LoadChanges => Msg::Changes(text(load_changes(&client).await)),
            Effect::LoadWindowStatus => Msg::WindowStatus(text(client.current_window().await)),
            Effect::LoadCalendar { from, to } => {
                Msg::Calendar(text(client.calendar(from, to).await))
            }
            Effect::LoadVerifications => Msg::Verifications(text(client.verifications().await)),
            Effect::LoadIncidents => Msg::Incidents(text(client.incidents().await)),
            Effect::PollVerifications => {
                Msg::VerificationsPolled(text(client.verifications().await))
            }
            Effect::VerificationOutcome(id, req) => {
                Msg::VerificationDecided(text(client.verification_outcome(id, &req).await))
            }
            Effect::Rollback(id, req) => Msg::RolledBack(text(client.rollback(id, &req).await)),
            Effect::Preview(generation, req) => {
                Msg::Preview(generation, text(client.preview(&req).await))
            }
            Effect::Create(req) => Msg::Submitted(text(client.create_change(&req, None).await)),
            Effect::Approve(id, req) => Msg::ChangeDecided(text(client.approve(id, &req).await)),
            Effect::Deny(id, req) => Msg::ChangeDecided(text(client.deny(id, &req).await)),
            Effect::Withdraw(id, req) => Msg::ChangeDecided(text(client.withdraw(id, &req).await)),
            Effect::Cancel(id, req) => Msg::ChangeDecided(text(client.cancel(id, &req).await)),
            Effect::AddFreeze(req) => Msg::GovernanceDone(
                text(client.create_freeze(&req).await)
                    .map(|f| format!("freeze '{}' announced", f.name)),
            ),
            Effect::RemoveFreeze(id) => Msg::GovernanceDone(
                text(client.delete_freeze(id).await).map(|_| format!("freeze #{id} removed")),
            ),
            Effect::Pause(req) => Msg::GovernanceDone(
                text(client.pause(&req).await).map(|_| "all changes paused".to_string()),
            ),
            // Written by the event loop itself, between two frames (see `carry_out`).
            Effect::Copy(_) => return,
            Effect::Resume => Msg::GovernanceDone(
                text(client.resume().await).map(|_| "changes resumed".to_string()),
            ),
        };
        let _ = tx.send(msg);
    });
}

/// Every pending change (following the server's cursor page by page), plus a page of recent
/// ones in any state (for outcomes and rollback confirmations), not the whole history.
async fn load_changes(
    client: &ApiClient,
) -> Result<Vec<crate::domain::change::Change>, ClientError> {
    use crate::domain::change::ChangeState;
    // Every scheduled change too, however old its request: the Windows pane shows them.
    let (pending, scheduled, recent) = tokio::join!(
        client.changes_following(Some(ChangeState::PendingApproval), None, None),
        client.changes_following(Some(ChangeState::Scheduled), None, None),
        client.changes(None, Some(200))
    );
    let mut all = pending?.items;
    all.extend(scheduled?.items);
    all.extend(recent?);
    Ok(all)
}

/// Follows the server's event stream for as long as the dashboard runs, reconnecting with
/// `Last-Event-ID` so nothing is missed across a drop.
async fn follow_events(client: ApiClient, tx: mpsc::UnboundedSender<Msg>) {
    let mut last: Option<i64> = None;
    let mut backoff = Duration::from_millis(500);
    loop {
        // The first connection brings recent history for the activity strip.
        let backlog = if last.is_none() { 30 } else { 0 };
        let why = match client.open_events(last, backlog).await {
            Ok(mut events) => {
                let mut why = "the server closed the event stream".to_string();
                while let Some(item) = events.next().await {
                    match item {
                        Ok(e) if e.kind == STREAM_READY => {
                            last = Some(e.seq);
                            backoff = Duration::from_millis(500);
                            if tx.send(Msg::StreamUp).is_err() {
                                return;
                            }
                        }
                        Ok(e) => {
                            last = Some(e.seq);
                            if tx.send(Msg::ServerEvent(Box::new(e))).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            why = e.to_string();
                            break;
                        }
                    }
                }
                why
            }
            Err(e) => e.to_string(),
        };
        if tx.send(Msg::StreamDown(why)).is_err() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
