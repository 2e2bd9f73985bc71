//! Plugin code the host waits for with a deadline (`create`, `started`, `destroy`) runs on a
//! helper thread, so that an overrun leaves that thread behind, never the host's. Helpers are
//! reused: a thread per call cost startup one spawn per plugin created, in the serial loop of
//! stage 5. A helper whose call overran its deadline serves again only once that call returns.

use std::sync::mpsc;
use std::time::Duration;

use parking_lot::Mutex;

type Job = Box<dyn FnOnce() + Send>;

/// Helpers waiting for a job, at most [`MAX_IDLE`] (more leave once their job is done).
static IDLE: Mutex<Vec<mpsc::Sender<Job>>> = Mutex::new(Vec::new());
const MAX_IDLE: usize = 4;

/// Runs `f` on a helper thread (in the span current here) and waits up to `deadline`. Native
/// code cannot be pre-empted: on timeout the helper is left running (abandoned) and `None` is
/// returned.
pub(crate) fn run_with_deadline<T: Send + 'static>(
    deadline: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = mpsc::sync_channel(1);
    let span = crate::frame::trace::carried();
    let mut job: Job = Box::new(move || {
        let _in = span.enter();
        let _ = tx.send(f());
    });
    loop {
        let idle = IDLE.lock().pop();
        let Some(helper) = idle else {
            if let Err(e) = spawn_helper(job) {
                tracing::error!("cannot spawn a thread to enforce a deadline: {e}");
                return None;
            }
            break;
        };
        match helper.send(job) {
            Ok(()) => break,
            // That helper is gone (its job panicked past the boundary's guard): the next one.
            Err(mpsc::SendError(back)) => job = back,
        }
    }
    rx.recv_timeout(deadline).ok()
}

fn spawn_helper(first: Job) -> std::io::Result<()> {
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("airlock-deadline".to_owned())
        .spawn(move || {
            let mut job = first;
            loop {
                job();
                {
                    let mut idle = IDLE.lock();
                    if idle.len() >= MAX_IDLE {
                        return;
                    }
                    idle.push(tx.clone());
                }
                match rx.recv() {
                    Ok(next) => job = next,
                    Err(_) => return,
                }
            }
        })
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overrun_returns_none_and_the_next_call_still_runs() {
        let (release, wait) = mpsc::channel::<()>();
        let stuck = run_with_deadline(Duration::from_millis(20), move || {
            let _ = wait.recv();
            1
        });
        assert_eq!(stuck, None);
        for i in 0..20 {
            assert_eq!(
                run_with_deadline(Duration::from_secs(30), move || i),
                Some(i)
            );
        }
        drop(release);
    }

    #[test]
    fn helpers_are_reused_and_calls_from_several_threads_each_get_their_answer() {
        let name = || std::thread::current().name().map(str::to_owned);
        let on = run_with_deadline(Duration::from_secs(30), name);
        assert_eq!(on, Some(Some("airlock-deadline".to_owned())));
        std::thread::scope(|s| {
            for t in 0..4u64 {
                s.spawn(move || {
                    for i in 0..50 {
                        let got = run_with_deadline(Duration::from_secs(30), move || t * 1000 + i);
                        assert_eq!(got, Some(t * 1000 + i));
                    }
                });
            }
        });
    }
}
