//! `airlock run --listen ADDR`: serves the plugins' declared routes (`/plugins/<id><path>`)
//! over HTTP with `tiny_http`, each request handed to [`Host::handle_http`]. If the environment
//! variable `AIRLOCK_LISTEN_TOKEN` is set, a request must carry `Authorization: Bearer <it>`
//! (`401` otherwise): the host's authentication hook, set by the CLI.

use std::io::Read;
use std::net::SocketAddr;

use airlock::http::HttpIn;
use airlock::Host;

/// The variable whose value requests must carry as a bearer token.
pub const TOKEN_ENV: &str = "AIRLOCK_LISTEN_TOKEN";

/// The server, started: its address; [`Listener::serve`] answers requests until
/// [`Listener::stop`].
pub struct Listener {
    server: tiny_http::Server,
}

impl Listener {
    /// Binds `addr`.
    ///
    /// # Errors
    ///
    /// Why it cannot listen there.
    pub fn bind(addr: &str, token: bool) -> Result<Self, String> {
        let server =
            tiny_http::Server::http(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let listener = Self { server };
        // Without a token every request runs as the host program: only this machine may ask.
        if !token && !listener.addr().is_some_and(|a| a.ip().is_loopback()) {
            return Err(format!(
                "set {TOKEN_ENV} to listen on {addr}: without a token only a loopback address \
                 is served"
            ));
        }
        Ok(listener)
    }

    /// Where it listens.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.server.server_addr().to_ip()
    }

    /// Answers requests with `host` until [`Listener::stop`].
    pub fn serve(&self, host: &Host, max_body: usize) {
        for mut request in self.server.incoming_requests() {
            let url = request.url().to_owned();
            let (path, query) = url.split_once('?').unwrap_or((&url, ""));
            let mut body = Vec::new();
            if let Err(e) = request
                .as_reader()
                .take(max_body as u64 + 1)
                .read_to_end(&mut body)
            {
                let response = tiny_http::Response::from_string(format!(
                    "the request's body could not be read: {e}\n"
                ))
                .with_status_code(400);
                let _ = request.respond(response);
                continue;
            }
            let input = HttpIn {
                method: request.method().as_str().to_owned(),
                path: path.to_owned(),
                query: query.to_owned(),
                headers: request
                    .headers()
                    .iter()
                    .map(|h| (h.field.as_str().to_string(), h.value.as_str().to_owned()))
                    .collect(),
                body,
            };
            let answer = host.handle_http(&input);
            let mut response =
                tiny_http::Response::from_data(answer.body).with_status_code(answer.status);
            for (name, value) in &answer.headers {
                if let Ok(header) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes())
                {
                    response.add_header(header);
                }
            }
            let _ = request.respond(response);
        }
    }

    /// Ends [`Listener::serve`].
    pub fn stop(&self) {
        self.server.unblock();
    }
}

/// The CLI's authentication hook: the bearer token in [`TOKEN_ENV`], if it is set.
pub fn token_auth(
    token: Option<String>,
) -> impl Fn(&HttpIn) -> Result<Option<airlock_abi::wire::Principal>, String> + Send + Sync {
    move |request: &HttpIn| {
        let Some(token) = &token else {
            return Ok(None);
        };
        let presented = request
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
            .and_then(|(_, v)| v.strip_prefix("Bearer "));
        // Compared in full whatever differs first, so the time taken tells nothing.
        let same = presented.is_some_and(|p| {
            p.len() == token.len()
                && p.bytes()
                    .zip(token.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        });
        if same {
            Ok(None)
        } else {
            Err(format!("a bearer token is needed ({TOKEN_ENV})"))
        }
    }
}
