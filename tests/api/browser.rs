//! A real headless Chromium driven over WebDriver (chromedriver), for the pages.
//!
//! `.ci/run` installs Debian's `chromium` and `chromium-driver` and sets
//! `CS_REQUIRE_BROWSER=1`, so there these tests always run. On a machine without them, plain
//! `cargo test` skips the browser tests with a message instead of failing (the README says so).

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Chrome {
    pub client: Client,
    driver: Child,
    profile: PathBuf,
}

fn find(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for n in names {
            let p = dir.join(n);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

impl Chrome {
    /// Starts chromedriver and a headless Chromium, or returns None (after saying why) when
    /// they are not installed and not required.
    pub async fn start() -> Option<Chrome> {
        let driver_bin = find(&["chromedriver"]);
        let chrome_bin = find(&["chromium", "chromium-browser", "google-chrome"]);
        let (Some(driver_bin), Some(chrome_bin)) = (driver_bin, chrome_bin) else {
            assert!(
                std::env::var("CS_REQUIRE_BROWSER").is_err(),
                "CS_REQUIRE_BROWSER is set but chromium/chromedriver are not installed"
            );
            eprintln!(
                "SKIPPED: browser test needs chromium and chromedriver (apt-get install chromium chromium-driver)"
            );
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile =
            std::env::temp_dir().join(format!("cs-chrome-{}", crate::helpers::random_suffix()));
        let caps = json!({
            "goog:chromeOptions": {
                "binary": chrome_bin,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display())]
            }
        });
        let caps = caps.as_object().expect("caps").clone();
        let mut last_err = String::new();
        for _ in 0..100 {
            let conn = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(conn)
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => {
                    return Some(Chrome {
                        client,
                        driver,
                        profile,
                    });
                }
                Err(e) => last_err = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not start: {last_err}");
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    /// Finds an element, waiting up to 10 s for it to appear (after a navigation).
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        let mut last = String::new();
        for _ in 0..100 {
            match self.client.find(Locator::Css(css)).await {
                Ok(el) => return el,
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{css} never appeared: {last}");
    }

    pub async fn fill(&self, css: &str, value: &str) {
        let el = self.find(css).await;
        el.clear().await.expect("clear");
        el.send_keys(value).await.expect("type");
    }

    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.expect("click");
    }

    pub async fn text(&self, css: &str) -> String {
        // A click may have started a navigation: an element found on the page being left goes
        // stale, so find it again.
        let mut last = String::new();
        for _ in 0..100 {
            match self.find(css).await.text().await {
                Ok(t) => return t,
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("text of {css}: {last}");
    }

    /// Waits (up to 10 s) for the text of `css` to become `expected` (a click's navigation
    /// may still be on its way); returns the text it ended with, for the caller's assertion.
    pub async fn wait_for_text(&self, css: &str, expected: &str) -> String {
        let mut text = self.text(css).await;
        for _ in 0..100 {
            if text == expected {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            text = self.text(css).await;
        }
        text
    }

    pub async fn source(&self) -> String {
        self.client.source().await.expect("page source")
    }

    pub async fn path(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("url")
            .path()
            .to_string()
    }

    /// Waits (up to 10 s) for a navigation a click started to reach `expected`; returns the
    /// path it ended on, for the caller's assertion.
    pub async fn wait_for_path(&self, expected: &str) -> String {
        let mut path = self.path().await;
        for _ in 0..100 {
            if path == expected {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            path = self.path().await;
        }
        path
    }

    /// Saves a PNG screenshot under `target/test-artifacts/`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
        std::fs::create_dir_all(&dir).expect("artifact dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
