//! The playground in a real browser: Debian's headless Chromium, driven over
//! the DevTools protocol, opens GraphiQL from the gateway (no internet), runs
//! the first example tab and must see data in the result pane. Leaves a
//! screenshot in `target/tmp/playground.png` (docs/playground.png is one).
//!
//! Needs `/usr/bin/chromium` (or `TESSERA_CHROMIUM`); without it the test
//! passes with a note, except with `CI=true`, where it fails.

mod common;

use std::time::{Duration, Instant};

use common::Stack;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;
use tokio_tungstenite::tungstenite::Message;

fn chromium() -> Option<String> {
    let path = std::env::var("TESSERA_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if std::path::Path::new(&path).exists() {
        return Some(path);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true and no Chromium at {path}: .ci/run installs Debian's chromium"
    );
    eprintln!("skipped: no Chromium at {path} (apt-get install chromium)");
    None
}

/// One DevTools session on a page.
struct Page {
    socket: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    next: u64,
}

impl Page {
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let message = json!({ "id": id, "method": method, "params": params }).to_string();
        self.socket
            .send(Message::text(message))
            .await
            .expect("send to Chromium");
        while let Some(message) = self.socket.next().await {
            let Ok(Message::Text(text)) = message else {
                continue;
            };
            let value: Value = serde_json::from_str(&text).expect("DevTools JSON");
            if value["id"] == json!(id) {
                assert!(value.get("error").is_none(), "{method}: {value}");
                return value["result"].clone();
            }
        }
        panic!("Chromium closed the DevTools connection");
    }

    /// Evaluates `expression` in the page; its JSON value.
    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true }),
            )
            .await;
        result["result"]["value"].clone()
    }

    /// Waits until `expression` is true in the page.
    async fn until(&mut self, expression: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.eval(expression).await == json!(true) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn graphiql_opens_offline_and_runs_the_first_example() {
    let Some(chromium) = chromium() else { return };
    let (_stack, url) = Stack::with_app().await;

    let profile = std::env::temp_dir().join(format!("tessera-chromium-{}", std::process::id()));
    let mut browser = tokio::process::Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1400,900",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("Chromium starts");
    // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/…"
    let mut lines = tokio::io::BufReader::new(browser.stderr.take().expect("stderr")).lines();
    let port = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.split("ws://127.0.0.1:").nth(1) {
                return rest.split('/').next().and_then(|p| p.parse::<u16>().ok());
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .expect("Chromium's DevTools port");
    // Keep reading stderr so Chromium never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let targets: Vec<Value> = reqwest::get(format!("http://127.0.0.1:{port}/json/list"))
        .await
        .expect("targets")
        .json()
        .await
        .expect("targets JSON");
    let ws = targets
        .iter()
        .find(|t| t["type"] == "page")
        .and_then(|t| t["webSocketDebuggerUrl"].as_str())
        .expect("a page target")
        .to_string();
    let (socket, _) = tokio_tungstenite::connect_async(ws)
        .await
        .expect("DevTools socket");
    let mut page = Page { socket, next: 0 };
    page.call("Page.enable", json!({})).await;
    page.call("Page.navigate", json!({ "url": url })).await;

    page.until(
        "!!document.querySelector('.graphiql-execute-button')",
        "GraphiQL to render (its assets come from the gateway)",
    )
    .await;
    let tabs = page
        .eval("document.querySelectorAll('.graphiql-tab').length")
        .await;
    assert_eq!(tabs, json!(tessera::http::EXAMPLES.len()), "one tab per example");
    page.eval("document.querySelector('.graphiql-execute-button').click()")
        .await;
    // The response editor (CodeMirror) holds the result as text.
    let response = "[...document.querySelectorAll('.result-window .CodeMirror')].map(e => e.CodeMirror.getValue()).join('')";
    page.until(
        &format!("({response}).includes('\"contractSearch\"')"),
        "the result pane to show data",
    )
    .await;
    let text = page.eval(response).await;
    let body: Value = serde_json::from_str(text.as_str().expect("text")).expect("the result pane holds JSON");
    assert!(body["data"]["contractSearch"]["totalCount"].is_u64(), "{body}");
    assert!(body.get("errors").is_none(), "{body}");

    let shot = page
        .call("Page.captureScreenshot", json!({ "format": "png" }))
        .await;
    let png = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        shot["data"].as_str().expect("png"),
    )
    .expect("base64");
    // Cargo's scratch folder for integration tests (`target/tmp`, wherever
    // CARGO_TARGET_DIR puts the target folder).
    let target = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("playground.png");
    std::fs::write(&target, png).expect("screenshot written");
    let _ = browser.kill().await;
    let _ = std::fs::remove_dir_all(&profile);
}
