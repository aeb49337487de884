//! Rate-limiting JWKS refreshes triggered by [`super::TokenError::UnknownKey`], so a flood of
//! tokens with made-up `kid`s cannot make the gateway hammer a peer's JWKS endpoint.

use std::collections::HashMap;

/// Allows one JWKS refresh per issuer per `min_interval` seconds.
#[derive(Debug, Clone)]
pub struct JwksRefreshLimiter {
    min_interval: u64,
    last: HashMap<String, u64>,
}

impl JwksRefreshLimiter {
    /// A limiter allowing a refresh per issuer every `min_interval` seconds.
    pub fn new(min_interval: u64) -> Self {
        JwksRefreshLimiter {
            min_interval,
            last: HashMap::new(),
        }
    }

    /// Whether `issuer`'s JWKS may be fetched at `now`; if so, records the attempt.
    /// Unknown issuers are never refreshed (call this only for trusted peers).
    pub fn try_acquire(&mut self, issuer: &str, now: u64) -> bool {
        match self.last.get(issuer) {
            Some(&at) if now < at.saturating_add(self.min_interval) => false,
            _ => {
                self.last.insert(issuer.to_owned(), now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_refresh_per_issuer_per_interval() {
        let mut limiter = JwksRefreshLimiter::new(60);
        assert!(limiter.try_acquire("fink", 1000));
        assert!(!limiter.try_acquire("fink", 1059));
        assert!(limiter.try_acquire("alerce", 1059));
        assert!(limiter.try_acquire("fink", 1060));
    }
}
