//! A command in a tmux server of its own, driven with keys and read from the screen. The TUI's
//! end-to-end test (tests/tui_e2e.rs) and the TUI benchmark (benches/tui.rs) both include this
//! file as a module, so the dashboard is driven one way.
// Not every includer uses every function.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub type Failure = Box<dyn std::error::Error + Send + Sync>;

const SESSION: &str = "cb";

pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// `argv` at `w`×`h` (through `env`, with `vars`) in a detached session on a tmux server
    /// named after `tag` and this process, so parallel runs never share one.
    pub fn start(
        tag: &str,
        size: (u16, u16),
        vars: &[String],
        argv: &[&str],
    ) -> Result<Tmux, Failure> {
        let tmux = Tmux {
            socket: format!("cb-{tag}-{}", std::process::id()),
        };
        let (w, h) = (size.0.to_string(), size.1.to_string());
        let mut args = vec![
            "new-session",
            "-d",
            "-s",
            SESSION,
            "-x",
            &w,
            "-y",
            &h,
            "env",
        ];
        args.extend(vars.iter().map(String::as_str));
        args.extend_from_slice(argv);
        tmux.cmd(&args)?;
        Ok(tmux)
    }

    /// A tmux command on this server; its output.
    pub fn cmd(&self, args: &[&str]) -> Result<String, Failure> {
        let out = Command::new("tmux")
            .args(["-u", "-L", &self.socket])
            .args(args)
            .output()
            .map_err(|e| {
                format!("tmux is needed (apt-get install tmux; .ci/run installs it): {e}")
            })?;
        if !out.status.success() {
            return Err(format!(
                "tmux {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The process running in the session.
    pub fn pid(&self) -> Result<u32, Failure> {
        let pid = self.cmd(&["list-panes", "-t", SESSION, "-F", "#{pane_pid}"])?;
        Ok(pid.trim().parse()?)
    }

    pub fn screen(&self) -> String {
        self.cmd(&["capture-pane", "-p", "-t", SESSION])
            .unwrap_or_default()
    }

    /// Waits until `text` is on screen; the screen then.
    pub fn wait_for(&self, text: &str, within: Duration) -> Result<String, Failure> {
        let end = Instant::now() + within;
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return Ok(screen);
            }
            if Instant::now() >= end {
                return Err(format!("'{text}' not on screen after {within:?}:\n{screen}").into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn keys(&self, keys: &[&str]) -> Result<(), Failure> {
        let mut args = vec!["send-keys", "-t", SESSION];
        args.extend_from_slice(keys);
        self.cmd(&args).map(|_| ())
    }

    /// Ends the tmux server: the terminal goes away under whatever runs in it.
    pub fn kill(&self) -> Result<(), Failure> {
        self.cmd(&["kill-server"]).map(|_| ())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // q first, so a dashboard still running restores its terminal and exits on its own.
        if self.keys(&["q"]).is_ok() {
            std::thread::sleep(Duration::from_millis(300));
        }
        let _ = self.kill();
    }
}

/// The environment of a dashboard that must not touch the user's files: home, data and
/// configuration all under `home`.
pub fn sandbox(home: &Path) -> Vec<String> {
    let h = home.display();
    vec![
        format!("HOME={h}"),
        format!("XDG_DATA_HOME={h}/data"),
        format!("XDG_CONFIG_HOME={h}/config"),
        format!("CB_CONFIG_DIR={h}/cb-config"),
        "RUST_LOG=warn".into(),
    ]
}
