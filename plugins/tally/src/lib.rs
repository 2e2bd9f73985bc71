//! `tally`: a slow word counter that streams. `count` emits each word with its running count
//! as it goes (`ctx.emit`), pausing `delay_ms` between words (its config), stops as soon as
//! its call is cancelled, and answers the totals; `totals` reads what every count so far added
//! up to (kv), and `reset` forgets it. The schemas in `plugin.json` are derived from the types
//! here (see the `the_manifest_schemas_match_the_types` test), so the host refuses an input
//! that does not fit before the plugin sees it, and `airlock mcp` offers them to its clients.

use std::collections::BTreeMap;
use std::time::Duration;

use airlock_abi::wire::CallErrorCode;
use airlock_abi::{ActionError, Actions, Context, ContextError, InitError, Plugin};
use serde::{Deserialize, Serialize};

/// The plugin's config.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Milliseconds to pause after each word (a slow counter, to watch it stream).
    #[serde(default)]
    pub delay_ms: u64,
}

/// What `count` takes.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Count {
    /// The text whose words to count.
    pub text: String,
    /// How many of the most frequent words to answer (default 3).
    #[serde(default)]
    pub top: Option<u32>,
}

/// One word and how often it was seen: a chunk of `count`'s stream, and a line of its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct Seen {
    /// The word, in lower case.
    pub word: String,
    /// How many times so far.
    pub count: u64,
}

/// What `count` answers.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct Counted {
    /// Words counted.
    pub words: u64,
    /// Distinct words.
    pub distinct: u64,
    /// The most frequent, most first.
    pub top: Vec<Seen>,
}

/// What `totals` answers: every word any count has seen, with its count.
pub type Totals = BTreeMap<String, u64>;

/// The plugin.
pub struct Tally {
    ctx: Context,
    delay: Duration,
}

impl Tally {
    fn count(&self, input: Count) -> Result<Counted, ActionError> {
        let mut seen: BTreeMap<String, u64> = BTreeMap::new();
        let mut words = 0;
        for word in input.text.split(|c: char| !c.is_alphanumeric()) {
            if word.is_empty() {
                continue;
            }
            if self.ctx.cancelled() {
                self.ctx
                    .info_with("count cancelled", &[("after", words.into())]);
                break;
            }
            let word = word.to_lowercase();
            let count = seen.entry(word.clone()).or_default();
            *count += 1;
            words += 1;
            // The caller sees each word as it is counted; it may have gone (cancelled). Any
            // other failure (a host without streams) only loses the chunk.
            let seen = Seen {
                word,
                count: *count,
            };
            if let Err(ContextError::Call {
                code: CallErrorCode::Cancelled,
                ..
            }) = self.ctx.emit(&seen)
            {
                break;
            }
            std::thread::sleep(self.delay);
        }
        match self.add_to_totals(&seen) {
            // The totals are optional (`kv` is not required): the count still answers.
            Err(ContextError::CapabilityViolation { .. }) => {
                self.ctx
                    .warn("totals not kept: the kv capability is not granted");
            }
            other => other?,
        }
        let mut top: Vec<Seen> = seen
            .iter()
            .map(|(word, count)| Seen {
                word: word.clone(),
                count: *count,
            })
            .collect();
        top.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.word.cmp(&b.word)));
        top.truncate(input.top.unwrap_or(3) as usize);
        Ok(Counted {
            words,
            distinct: seen.len() as u64,
            top,
        })
    }

    fn add_to_totals(&self, seen: &BTreeMap<String, u64>) -> Result<(), ContextError> {
        if seen.is_empty() {
            return Ok(());
        }
        let mut totals: Totals = self.ctx.kv().get("totals")?.unwrap_or_default();
        for (word, count) in seen {
            *totals.entry(word.clone()).or_default() += count;
        }
        self.ctx.kv().set("totals", &totals)?;
        Ok(())
    }
}

impl Plugin for Tally {
    fn create(ctx: Context) -> Result<Self, InitError> {
        let config: Config = ctx.config()?;
        Ok(Self {
            ctx,
            delay: Duration::from_millis(config.delay_ms),
        })
    }

    fn actions(actions: &mut Actions<Self>) {
        actions
            .add("count", Self::count)
            .add("totals", |this: &Self, (): ()| {
                Ok::<Totals, ActionError>(this.ctx.kv().get("totals")?.unwrap_or_default())
            })
            .add("reset", |this: &Self, (): ()| {
                this.ctx.kv().delete("totals")?;
                Ok::<(), ActionError>(())
            });
    }
}

airlock_abi::export_plugin!(Tally);

#[cfg(test)]
mod tests {
    use airlock::testing::TestHost;
    use serde_json::json;

    use super::*;

    #[test]
    fn the_manifest_schemas_match_the_types() {
        airlock::testing::schemas(env!("CARGO_MANIFEST_DIR"))
            .action::<Count, Counted>("count")
            .action::<(), Totals>("totals")
            .action::<(), ()>("reset")
            .config::<Config>()
            .assert_current();
    }

    #[test]
    fn count_streams_each_word_and_answers_the_most_frequent() {
        let tally = TestHost::new()
            .grants(&["kv"])
            .create::<Tally>()
            .expect("created");
        let mut chunks = Vec::new();
        let answer = tally
            .host()
            .call("tally", "count")
            .cancel_on(&airlock::CancelToken::new())
            .on_chunk(|chunk| chunks.push(chunk))
            .json(&json!({"text": "the cat and the hat", "top": 1}))
            .expect("called");
        assert_eq!(chunks.len(), 5);
        assert_eq!(
            chunks[3],
            airlock::Chunk::Json(json!({"word": "the", "count": 2}))
        );
        let airlock::Reply::Ok(answer) = answer else {
            panic!("{answer:?}")
        };
        assert_eq!(answer["top"], json!([{"word": "the", "count": 2}]));
        let totals: Totals = tally
            .call("totals", &())
            .expect("called")
            .ok()
            .expect("answered");
        assert_eq!(totals["the"], 2);
    }

    #[test]
    fn an_input_that_breaks_the_schema_never_reaches_the_plugin() {
        let tally = TestHost::new()
            .grants(&["kv"])
            .create::<Tally>()
            .expect("created");
        let err = tally
            .host()
            .call("tally", "count")
            .json(&json!({"text": 42}))
            .expect_err("refused");
        assert_eq!(err.code, airlock::CallErrorCode::BadInput);
        assert!(err.message.contains("at /text"), "{err}");
    }
}
