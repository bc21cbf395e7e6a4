//! The people's side of the load: approvers deciding pending withdrawals through the admin
//! API (the same decision code as the pages and the email links), and signed-in page loads of
//! the approval queue and the withdrawals list.
//!
//! Credentials come from `countersign user create` (email, password, otpauth URL); the
//! current TOTP code is computed here, once per user (the server refuses a code's time step
//! twice), so each approver signs in once and the page user once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::{Cli, Errors, Figures, say, summarize};

/// `EMAIL,PASSWORD,OTPAUTH_URL` as given on the command line.
pub struct Person {
    email: String,
    password: String,
    otpauth: String,
}

impl Person {
    pub fn parse(s: &str) -> Result<Person> {
        let mut parts = s.splitn(3, ',');
        let (Some(email), Some(password), Some(otpauth)) =
            (parts.next(), parts.next(), parts.next())
        else {
            bail!("a person is EMAIL,PASSWORD,OTPAUTH_URL");
        };
        Ok(Person {
            email: email.to_owned(),
            password: password.to_owned(),
            otpauth: otpauth.to_owned(),
        })
    }

    fn code(&self) -> Result<String> {
        let totp = totp_rs::Totp::from_url(&self.otpauth).context("otpauth URL")?;
        Ok(totp.generate_current().to_string())
    }
}

fn client(cookies: bool) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .cookie_store(cookies)
        .tcp_nodelay(true)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()?)
}

async fn bearer(http: &reqwest::Client, url: &str, p: &Person) -> Result<String> {
    let resp = http
        .post(format!("{url}/admin/api/token"))
        .json(&json!({"email": p.email, "password": p.password, "code": p.code()?}))
        .send()
        .await?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    match body["token"].as_str() {
        Some(t) if status.is_success() => Ok(t.to_owned()),
        _ => bail!("token for {} refused: HTTP {status} {body}", p.email),
    }
}

/// `ids` are pending withdrawals; each approver (one task per `--person`) claims the next one
/// and approves it (`PROCESSING`, then `COMPLETED`: two requests, one decision). A decision's
/// latency covers both.
pub async fn approvals(cli: &Cli, url: &str, people: &[Person], ids: Vec<i64>) -> Result<Figures> {
    if people.is_empty() {
        bail!("approvals mode needs at least one --person");
    }
    let http = client(false)?;
    let mut tokens = Vec::with_capacity(people.len());
    for p in people {
        tokens.push(bearer(&http, url, p).await?);
    }
    let ids = Arc::new(ids);
    let next = Arc::new(AtomicUsize::new(0));
    let samples = Arc::new(Mutex::new(Vec::<String>::new()));
    let cpu_before = crate::cpu::snapshot(cli.server_pid);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for token in tokens {
        let (http, ids, next, samples) = (http.clone(), ids.clone(), next.clone(), samples.clone());
        let url = url.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut out = (Vec::new(), Errors::new());
            while let Some(id) = ids.get(next.fetch_add(1, Ordering::Relaxed)) {
                let t0 = Instant::now();
                let mut failed = None;
                for status in ["PROCESSING", "COMPLETED"] {
                    let r = http
                        .patch(format!("{url}/admin/api/withdrawals/{id}/status"))
                        .bearer_auth(&token)
                        .json(&json!({"status": status, "adminNote": "bench"}))
                        .send()
                        .await;
                    match r {
                        Ok(resp) if resp.status().is_success() => {
                            let _ = resp.bytes().await;
                        }
                        Ok(resp) => {
                            let code = resp.status().as_u16().to_string();
                            failed = Some((code, resp.text().await.unwrap_or_default()));
                            break;
                        }
                        Err(e) => {
                            failed = Some(("transport".to_owned(), e.to_string()));
                            break;
                        }
                    }
                }
                out.0.push(t0.elapsed().as_micros() as u64);
                if let Some((code, body)) = failed {
                    *out.1.entry(code).or_default() += 1;
                    if let Ok(mut s) = samples.lock()
                        && s.len() < 5
                    {
                        s.push(body.chars().take(500).collect());
                    }
                }
            }
            out
        }));
    }
    let (mut lat, mut errors) = (Vec::new(), Errors::new());
    for t in tasks {
        let (l, e) = t.await.context("approver task panicked")?;
        lat.extend(l);
        e.into_iter()
            .for_each(|(k, v)| *errors.entry(k).or_default() += v);
    }
    let elapsed = start.elapsed();
    let used = cpu_before.and_then(|b| crate::cpu::since(&b, cli.server_pid, lat.len()));
    let mut figures = summarize(
        "approvals (claim + approve)",
        people.len(),
        lat,
        errors,
        elapsed,
    );
    figures.cpu = used;
    say(cli, &crate::render(&figures));
    for body in samples.lock().iter().flat_map(|s| s.iter()) {
        say(cli, &format!("  error body: {body}"));
    }
    Ok(figures)
}

/// Signs `p` in through the pages (password, then TOTP), keeping the session cookie.
async fn sign_in(url: &str, p: &Person) -> Result<reqwest::Client> {
    let http = client(true)?;
    let page = http
        .get(format!("{url}/login"))
        .send()
        .await?
        .text()
        .await?;
    let csrf = csrf(&page).context("no CSRF token on /login")?;
    let post = |path: &str, form: Vec<(&str, String)>| {
        http.post(format!("{url}{path}"))
            .header("Origin", url)
            .form(&form)
            .send()
    };
    let form = vec![
        ("email", p.email.clone()),
        ("password", p.password.clone()),
        ("csrf", csrf.clone()),
    ];
    let resp = post("/login", form).await?;
    if !resp.status().is_redirection() {
        bail!("sign-in of {} refused: HTTP {}", p.email, resp.status());
    }
    let page = http
        .get(format!("{url}/login/totp"))
        .send()
        .await?
        .text()
        .await?;
    let csrf = self::csrf(&page).unwrap_or(csrf);
    let resp = post("/login/totp", vec![("code", p.code()?), ("csrf", csrf)]).await?;
    if !resp.status().is_redirection() {
        bail!("TOTP of {} refused: HTTP {}", p.email, resp.status());
    }
    Ok(http)
}

fn csrf(html: &str) -> Option<String> {
    let at = html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    let end = html[at..].find('"')?;
    Some(html[at..at + end].to_owned())
}

/// Loads each of `paths` `cli.n` times over `cli.c` connections as a signed-in user.
pub async fn pages(
    cli: &Cli,
    url: &str,
    person: &Person,
    paths: &[String],
) -> Result<Vec<Figures>> {
    let http = sign_in(url, person).await?;
    let mut out = Vec::new();
    for path in paths {
        let target = format!("{url}{path}");
        let first = http.get(&target).send().await?;
        if first.status() != reqwest::StatusCode::OK {
            bail!("GET {path}: HTTP {} (not signed in?)", first.status());
        }
        let _ = first.bytes().await;
        let next = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..cli.c.max(1) {
            let (http, next, target, n) = (http.clone(), next.clone(), target.clone(), cli.n);
            tasks.push(tokio::spawn(async move {
                let mut out = (Vec::new(), Errors::new());
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    let t0 = Instant::now();
                    let r = http.get(&target).send().await;
                    let code = match r {
                        Ok(resp) => {
                            let status = resp.status();
                            let _ = resp.bytes().await;
                            (status != reqwest::StatusCode::OK).then(|| status.as_u16().to_string())
                        }
                        Err(_) => Some("transport".to_owned()),
                    };
                    out.0.push(t0.elapsed().as_micros() as u64);
                    if let Some(code) = code {
                        *out.1.entry(code).or_default() += 1;
                    }
                }
                out
            }));
        }
        let (mut lat, mut errors) = (Vec::new(), Errors::new());
        for t in tasks {
            let (l, e) = t.await.context("page task panicked")?;
            lat.extend(l);
            e.into_iter()
                .for_each(|(k, v)| *errors.entry(k).or_default() += v);
        }
        let f = summarize(&format!("GET {path}"), cli.c, lat, errors, start.elapsed());
        say(cli, &crate::render(&f));
        out.push(f);
    }
    Ok(out)
}
