//! [`Gateway`]: one gateway URL with the options meant for it, ready to connect.
//!
//! Credentials are bound to the gateway they were configured for. A program walking the
//! mesh (the directory, a provenance chain) learns other gateways' addresses from the
//! gateways it visits; a hostile gateway can name any address there, so:
//! - a token goes only to the URL it was configured with ([`Gateway::new`]), never to an
//!   address another gateway supplied ([`Gateway::discovered`] drops it);
//! - when the caller knows which gateway it means to reach by name (an alert ref names
//!   its gateway), a token whose `aud` claim names another gateway stays home
//!   ([`Gateway::for_name`]);
//! - TLS files are used only for `https://` URLs.

use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::client::{Bearer, Client};
use crate::connect::BufferedTcp;
use crate::error::{connect_hint, source_chain};
use crate::{Error, Options, Result};

/// HTTP/2 keepalive pings on idle connections, and how long an answer may take.
const KEEPALIVE: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 windows: a stream of 60 KB alerts needs far more than the 64 KiB default, or
/// every megabyte waits on a dozen window updates.
const STREAM_WINDOW: u32 = 8 << 20;
const CONNECTION_WINDOW: u32 = 32 << 20;
/// 1 MiB HTTP/2 frames: a batch then arrives in one or two frames instead of 64 of
/// 16 KiB (measured: about a third less client CPU).
const MAX_FRAME: u32 = 1 << 20;

/// One gateway: its URL, the endpoint settings and TLS files for it, and the token bound
/// to it. Cheap to clone; [`Gateway::connect`] opens a connection.
#[derive(Clone)]
pub struct Gateway {
    url: String,
    endpoint: Endpoint,
    options: Options,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("url", &self.url)
            .field("token", &self.options.token.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.url.starts_with("https://"))
            .finish()
    }
}

/// `host:port` means `http://host:port`, as the command line has always accepted.
fn with_scheme(url: &str) -> String {
    if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    }
}

/// The most URLs one gateway's replica list may hold. They are tried in turn, each
/// within the connect timeout, so thousands would take hours to fail.
pub const MAX_REPLICA_URLS: usize = 32;

/// The longest gateway URL accepted (and the most of one an error shows).
const MAX_URL_CHARS: usize = 2048;
const SHOWN_URL_CHARS: usize = 200;

/// `url` with its scheme (see [`with_scheme`]), checked by [`check_url`].
fn prepare(url: &str) -> Result<String> {
    if url.is_empty() {
        return Err(Error::Url {
            url: String::new(),
            reason: "empty gateway URL".into(),
        });
    }
    let url = with_scheme(url);
    check_url(&url)?;
    Ok(url)
}

/// `url` (with its scheme) checked before anything else sees it: no whitespace or control
/// characters, `http` or `https` in lower case (TLS is chosen by the `https://` prefix), a
/// host, and no user or password (credentials go in a token, and a URL is echoed in errors
/// and logs).
fn check_url(url: &str) -> Result<()> {
    let invalid = |reason: &str| {
        Err(Error::Url {
            url: shown(url),
            reason: reason.to_owned(),
        })
    };
    if url.chars().count() > MAX_URL_CHARS {
        return invalid(&format!("longer than {MAX_URL_CHARS} characters"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return invalid("it contains whitespace or control characters");
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return invalid("no scheme; use http:// or https://");
    };
    if scheme != "http" && scheme != "https" {
        return invalid("only http:// and https:// gateways are supported");
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return invalid(
            "a user or password in the URL is refused (it would be shown in errors and logs); \
             pass a token with --token or Options::token",
        );
    }
    if authority.is_empty() {
        return invalid("no host");
    }
    Ok(())
}

/// A URL as an error shows it: without user info (`user:password@` becomes `***@`), cut.
fn shown(url: &str) -> String {
    let redacted = match url.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            match rest[..end].rfind('@') {
                Some(at) => format!("{scheme}://***{}", &rest[at..]),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    };
    let mut out: String = redacted.chars().take(SHOWN_URL_CHARS).collect();
    if out.len() < redacted.len() {
        out.push('…');
    }
    out
}

/// Checks a replica list as given (a command line's comma list, a configuration): at
/// least one URL, at most [`MAX_REPLICA_URLS`], none empty. Errors never show a URL's user
/// info.
pub fn check_replica_urls<S: AsRef<str>>(urls: &[S]) -> Result<()> {
    let bad = |reason: String| Err(Error::Urls(reason));
    if urls.is_empty() {
        return bad("no gateway URL given".into());
    }
    if urls.len() > MAX_REPLICA_URLS {
        return bad(format!(
            "{} URLs given; a gateway's replicas are at most {MAX_REPLICA_URLS}",
            urls.len()
        ));
    }
    if let Some(i) = urls.iter().position(|u| u.as_ref().trim().is_empty()) {
        return bad(format!(
            "entry {} of {} is empty (a doubled or trailing comma?)",
            i + 1,
            urls.len()
        ));
    }
    Ok(())
}

impl Gateway {
    /// The gateway at `url` (`http://` for plain text, `https://` for TLS; no scheme means
    /// `http://`), reached with `options`: the token is bound to this URL. TLS files are
    /// read and checked now, so a bad file fails here rather than at the first call.
    pub fn new(url: &str, options: &Options) -> Result<Gateway> {
        let url = prepare(url)?;
        if !url.starts_with("https://") && options.has_tls_files() {
            return Err(Error::Tls(format!(
                "a CA, certificate or key needs an https:// gateway URL, not {url}"
            )));
        }
        Gateway::lenient(&url, options)
    }

    /// Like [`Gateway::new`], but TLS files are ignored for a plain-text URL instead of
    /// refused: for programs that walk the mesh with one set of options across open and
    /// TLS gateways. The files still go to `https://` gateways [`discovered`](Self::discovered)
    /// from this one.
    pub fn lenient(url: &str, options: &Options) -> Result<Gateway> {
        let url = prepare(url)?;
        let tls = url.starts_with("https://");
        if options.cert.is_some() != options.key.is_some() {
            return Err(Error::Tls(
                "a client certificate and its key go together".into(),
            ));
        }
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| Error::Url {
                url: url.clone(),
                reason: e.to_string(),
            })?
            .connect_timeout(options.connect_timeout)
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(MAX_FRAME)
            .tcp_nodelay(true)
            // A stream that waits for new alerts sends nothing: pings find a gateway cut
            // off (a network partition) instead of waiting on a dead connection forever.
            .http2_keep_alive_interval(KEEPALIVE)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        if tls {
            endpoint = endpoint
                .tls_config(tls_config(options)?)
                .map_err(|e| Error::Tls(source_chain(&e)))?;
        }
        Ok(Gateway {
            url,
            endpoint,
            options: options.clone(),
        })
    }

    /// The gateway's URL, with its scheme.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The options this gateway is reached with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Whether calls to this gateway carry a token.
    pub fn has_token(&self) -> bool {
        self.options.token.is_some()
    }

    /// This gateway, reached as the gateway named `name` (the `<gateway>` of an alert
    /// ref): the token stays only if it is for `name` (see [`crate::Token::is_for`]).
    pub fn for_name(&self, name: &str) -> Gateway {
        let mut g = self.clone();
        if g.options.token.as_ref().is_some_and(|t| !t.is_for(name)) {
            g.options.token = None;
        }
        g
    }

    /// The same options without the token: for open calls such as `DescribeGateway`.
    pub fn without_token(&self) -> Gateway {
        let mut g = self.clone();
        g.options.token = None;
        g
    }

    /// A gateway at `url`, an address another gateway supplied (a peer in its
    /// description). It never gets this gateway's token, unless `url` is this very URL;
    /// the CA and client certificate go along only to an `https://` URL.
    pub fn discovered(&self, url: &str) -> Result<Gateway> {
        let url = with_scheme(url);
        if url == self.url {
            return Ok(self.clone());
        }
        let options = Options {
            token: None,
            ..self.options.clone()
        };
        Gateway::lenient(&url, &options)
    }

    /// A connection to the gateway, failing within the connect timeout when nothing
    /// answers.
    pub async fn connect(&self) -> Result<Client> {
        let channel = self.channel().await?;
        Ok(Client::new(channel, self.bearer()?, &self.url))
    }

    /// A client whose connection is opened on first use and reopened after failures:
    /// for replicas that may be down now and serve later.
    pub fn connect_lazy(&self) -> Result<Client> {
        Ok(Client::new(self.lazy_channel(), self.bearer()?, &self.url))
    }

    /// A bare connection (no token) for callers that build their own gRPC clients.
    pub async fn channel(&self) -> Result<Channel> {
        // The connect timeout bounds the TCP connect; the handshake needs its own bound.
        let wait = self.options.connect_timeout + Duration::from_secs(5);
        let connect = async {
            if self.is_tls() {
                self.endpoint.connect_with_connector(BufferedTcp).await
            } else {
                self.endpoint.connect().await
            }
        };
        let connected = tokio::time::timeout(wait, connect).await;
        let reason = match connected {
            Ok(Ok(channel)) => return Ok(channel),
            Ok(Err(e)) => connect_hint(&source_chain(&e)),
            Err(_) => connect_hint(&format!("no answer within {wait:?}")),
        };
        Err(Error::Connect {
            url: self.url.clone(),
            reason,
        })
    }

    /// A channel that connects on first use and reconnects after failures.
    pub fn lazy_channel(&self) -> Channel {
        if self.is_tls() {
            self.endpoint.connect_with_connector_lazy(BufferedTcp)
        } else {
            self.endpoint.connect_lazy()
        }
    }

    /// Whether the connection is TLS (an `https://` URL).
    fn is_tls(&self) -> bool {
        self.url.starts_with("https://")
    }

    /// The interceptor that adds this gateway's token.
    pub fn bearer(&self) -> Result<Bearer> {
        Bearer::new(self.options.token.as_ref())
    }
}

/// Several URLs of one gateway (its replicas): a connection to the first that answers,
/// and lazy clients of the others in the order after it, to pass to
/// [`Client::subscribe_with_replicas`]. Fails with the last error when none answers.
pub async fn connect_any(gateways: &[Gateway]) -> Result<(Client, Vec<Client>)> {
    if gateways.len() > MAX_REPLICA_URLS {
        return Err(Error::Urls(format!(
            "{} URLs given; a gateway's replicas are at most {MAX_REPLICA_URLS}",
            gateways.len()
        )));
    }
    let mut last = None;
    for (i, g) in gateways.iter().enumerate() {
        match g.connect().await {
            Ok(client) => {
                let mut others = Vec::with_capacity(gateways.len() - 1);
                for other in gateways[i + 1..].iter().chain(&gateways[..i]) {
                    others.push(other.connect_lazy()?);
                }
                return Ok((client, others));
            }
            Err(e) => {
                tracing::warn!(url = %g.url(), error = %e, "gateway replica unreachable");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or(Error::Urls("no gateway URL given".into())))
}

fn tls_config(options: &Options) -> Result<ClientTlsConfig> {
    let mut tls = ClientTlsConfig::new();
    if let Some(ca) = &options.ca {
        let pem = alertmesh_auth::tls::load_pem_certs(ca)
            .map_err(|e| Error::Tls(format!("CA {}: {e}", ca.display())))?;
        tls = tls.ca_certificate(Certificate::from_pem(pem));
    }
    if let (Some(cert), Some(key)) = (&options.cert, &options.key) {
        let (c, k) = alertmesh_auth::tls::load_pem_identity(cert, key)
            .map_err(|e| Error::Tls(format!("client certificate: {e}")))?;
        tls = tls.identity(Identity::from_pem(c, k));
    }
    Ok(tls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Token;

    fn token_for(aud: &str) -> Token {
        use base64::Engine as _;
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::json!({ "aud": aud }).to_string());
        Token::new(&format!("eyJhbGciOiJFZERTQSJ9.{claims}.c2ln")).unwrap()
    }

    #[test]
    fn tokens_stay_with_their_url_and_audience() {
        let options = Options {
            token: Some(token_for("lasair")),
            ..Options::default()
        };
        let home = Gateway::new("127.0.0.1:50051", &options).unwrap();
        assert_eq!(home.url(), "http://127.0.0.1:50051");
        assert!(home.has_token());
        assert!(home.for_name("lasair").has_token());
        assert!(!home.for_name("lab").has_token());
        assert!(!home.without_token().has_token());
        // An address another gateway named gets nothing, whatever name it claims.
        let peer = home.discovered("http://10.0.0.9:50051").unwrap();
        assert!(!peer.has_token() && !peer.for_name("lasair").has_token());
        // The configured URL itself, named by a peer, is still the configured gateway.
        assert!(home
            .discovered("http://127.0.0.1:50051")
            .unwrap()
            .has_token());
        let opaque = Options {
            token: Some(Token::new("opaque-token").unwrap()),
            ..Options::default()
        };
        let home = Gateway::new("http://127.0.0.1:1", &opaque).unwrap();
        assert!(home.for_name("any").has_token());
        assert!(!home.discovered("http://127.0.0.1:2").unwrap().has_token());
    }

    #[test]
    fn hostile_urls_are_clear_errors_that_never_show_credentials() {
        let o = Options::default();
        let err = |url: &str| Gateway::new(url, &o).unwrap_err().to_string();
        assert_eq!(err(""), "invalid gateway URL \"\": empty gateway URL");
        for (url, says) in [
            ("ftp://127.0.0.1:1", "only http:// and https://"),
            ("HTTPS://127.0.0.1:1", "only http:// and https://"),
            ("file:///etc/passwd", "only http:// and https://"),
            ("unix:///tmp/s", "only http:// and https://"),
            ("http://", "no host"),
            ("http:///x", "no host"),
            ("http://a b:1", "whitespace or control"),
            ("http://a\u{1b}[2J:1", "whitespace or control"),
        ] {
            let e = err(url);
            assert!(e.contains(says), "{url}: {e}");
            assert!(!e.contains('\u{1b}'), "{url}: {e}");
        }
        for url in [
            "https://alice:s3cret-pw@gw.example:443",
            "http://s3cret-pw@127.0.0.1:1/x",
            "alice:s3cret-pw@127.0.0.1:1",
        ] {
            let e = err(url);
            assert!(
                e.contains("a user or password in the URL is refused"),
                "{e}"
            );
            assert!(!e.contains("s3cret") && !e.contains("alice"), "{e}");
            assert!(e.contains("***@"), "{e}");
            // The same for an address a hostile gateway supplied.
            let home = Gateway::new("http://127.0.0.1:1", &o).unwrap();
            let e = home.discovered(url).unwrap_err().to_string();
            assert!(!e.contains("s3cret"), "{e}");
        }
        let long = format!("http://{}:1", "a".repeat(5000));
        let e = err(&long);
        assert!(
            e.contains("longer than 2048 characters") && e.len() < 400,
            "{e}"
        );
    }

    #[test]
    fn replica_lists_are_bounded_and_have_no_empty_entries() {
        assert!(check_replica_urls(&["http://a:1", "http://b:1"]).is_ok());
        let e = check_replica_urls::<&str>(&[]).unwrap_err().to_string();
        assert_eq!(e, "invalid gateway URL list: no gateway URL given");
        let e = check_replica_urls(&["http://a:1", "", "http://b:1"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("entry 2 of 3 is empty"), "{e}");
        let many: Vec<String> = (0..5000).map(|i| format!("http://h{i}:1")).collect();
        let e = check_replica_urls(&many).unwrap_err().to_string();
        assert!(
            e.contains("5000 URLs given; a gateway's replicas are at most 32"),
            "{e}"
        );
        assert!(e.len() < 200, "the list is not echoed: {e}");
        assert!(check_replica_urls(&many[..MAX_REPLICA_URLS]).is_ok());
    }

    #[tokio::test]
    async fn connect_any_refuses_thousands_of_replicas_without_trying_them() {
        let o = Options::default();
        let many: Vec<Gateway> = (0..1000)
            .map(|i| Gateway::new(&format!("http://127.0.0.1:{}", 1 + i % 2), &o).unwrap())
            .collect();
        let e = connect_any(&many).await.unwrap_err().to_string();
        assert!(e.contains("1000 URLs given"), "{e}");
        let e = connect_any(&[]).await.unwrap_err().to_string();
        assert!(e.contains("no gateway URL given"), "{e}");
    }

    #[test]
    fn tls_files_need_https_and_come_in_pairs() {
        let with_ca = Options {
            ca: Some("/nonexistent/ca.pem".into()),
            ..Options::default()
        };
        let e = Gateway::new("http://127.0.0.1:1", &with_ca).unwrap_err();
        assert!(e.to_string().contains("https://"), "{e}");
        let e = Gateway::new("https://127.0.0.1:1", &with_ca).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
        let half = Options {
            cert: Some("c.pem".into()),
            ..Options::default()
        };
        assert!(Gateway::new("https://127.0.0.1:1", &half).is_err());
        assert!(Gateway::new("http://bad url", &Options::default()).is_err());
        // A walk from an open gateway keeps the CA for the TLS gateways it finds.
        let home = Gateway::lenient("http://127.0.0.1:1", &with_ca).unwrap();
        let e = home.discovered("https://127.0.0.1:2").unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
        assert!(home.discovered("http://127.0.0.1:3").is_ok());
    }

    #[tokio::test]
    async fn an_unreachable_gateway_fails_fast_and_says_where() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let options = Options {
            token: Some(Token::new("s3cret-token").unwrap()),
            ..Options::default()
        };
        let g = Gateway::new(&format!("127.0.0.1:{port}"), &options).unwrap();
        let e = g.connect().await.unwrap_err().to_string();
        assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
        assert!(!format!("{g:?}").contains("s3cret"));
    }
}
