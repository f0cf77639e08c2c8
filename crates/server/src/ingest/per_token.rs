//! Calls per token (`limits.calls_per_token`): however many agents a token
//! may stream for (an admin token, a relay), it holds at most this many
//! calls at once. Counted in the softphone adapter, which is where tokens
//! stream; a call is counted from its acceptance until its stream ends
//! (a parked call waiting to be resumed still counts). Taken without
//! waiting, under one lock: never overshot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tonic::Status;

use crate::auth::Digest;

#[derive(Default)]
pub struct TokenCalls {
    live: Arc<Mutex<HashMap<Digest, usize>>>,
}

/// One of a token's calls; dropping it gives the place back.
pub struct TokenCall {
    live: Arc<Mutex<HashMap<Digest, usize>>>,
    token: Digest,
}

impl TokenCalls {
    /// A place for one more call of `token` (named `name` in errors), or
    /// RESOURCE_EXHAUSTED when it holds `limit`.
    pub fn take(&self, token: Digest, name: &str, limit: usize) -> Result<TokenCall, Status> {
        let mut live = self.live.lock().expect("poisoned");
        let n = live.entry(token).or_insert(0);
        if *n >= limit {
            return Err(Status::resource_exhausted(format!(
                "the token of {name} already streams {n} call(s), the configured limit (limits.calls_per_token)"
            )));
        }
        *n += 1;
        Ok(TokenCall {
            live: self.live.clone(),
            token,
        })
    }
}

impl Drop for TokenCall {
    fn drop(&mut self) {
        let mut live = self.live.lock().expect("poisoned");
        if let Some(n) = live.get_mut(&self.token) {
            *n -= 1;
            if *n == 0 {
                live.remove(&self.token);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn a_token_holds_at_most_its_limit_and_gets_places_back() {
        let calls = TokenCalls::default();
        let (a, b) = ([1; 32], [2; 32]);
        let first = calls.take(a, "relay", 2).unwrap();
        let _second = calls.take(a, "relay", 2).unwrap();
        let refused = calls.take(a, "relay", 2).err().unwrap();
        assert_eq!(refused.code(), Code::ResourceExhausted);
        assert!(
            refused.message().contains("limits.calls_per_token"),
            "{}",
            refused.message()
        );
        let _other = calls.take(b, "other", 2).unwrap();
        drop(first);
        let _again = calls.take(a, "relay", 2).unwrap();
        assert_eq!(calls.live.lock().unwrap().get(&a), Some(&2));
    }
}
