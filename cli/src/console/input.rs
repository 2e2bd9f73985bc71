//! The console's input as lines that a plugin's shutdown request can end: standard input is
//! read on a thread of its own and fed through a channel, and a request that the host shut down
//! (`host.control`) ends the input as end of file would, so the console quits as on `/quit`.

use std::io::{self, BufRead, Read};
use std::sync::mpsc::{self, Receiver, Sender};

/// What the console's input is fed.
enum Feed {
    /// A line, with its line break.
    Line(Vec<u8>),
    /// The input failed.
    Failed(io::Error),
    /// End of input, or a plugin asked the host to shut down.
    End,
}

/// Ends the console's input from another thread (the host's shutdown-request handler).
#[derive(Debug, Clone)]
pub(crate) struct EndInput(Sender<Feed>);

impl EndInput {
    /// Ends the input: the console reads end of file after the lines already read.
    pub(crate) fn end(&self) {
        // The console may have stopped reading already; nothing is left to end then.
        let _ = self.0.send(Feed::End);
    }
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Line(_) => "Line",
            Self::Failed(_) => "Failed",
            Self::End => "End",
        })
    }
}

/// Lines of `source`, read on a thread of their own, that [`EndInput::end`] can cut short.
#[derive(Debug)]
pub(crate) struct EndableInput {
    feed: Receiver<Feed>,
    line: Vec<u8>,
    at: usize,
    ended: bool,
}

impl EndableInput {
    /// Reads `source` on a new thread (it stays blocked in its read if the input is ended
    /// first, until the process exits).
    ///
    /// # Errors
    ///
    /// The thread could not be started.
    pub(crate) fn spawn(source: impl BufRead + Send + 'static) -> io::Result<(Self, EndInput)> {
        let (send, feed) = mpsc::channel();
        let reader = send.clone();
        std::thread::Builder::new()
            .name("airlock-console-input".into())
            .spawn(move || read_lines(source, &reader))?;
        let input = Self {
            feed,
            line: Vec::new(),
            at: 0,
            ended: false,
        };
        Ok((input, EndInput(send)))
    }
}

fn read_lines(mut source: impl BufRead, feed: &Sender<Feed>) {
    loop {
        let mut line = Vec::new();
        let fed = match source.read_until(b'\n', &mut line) {
            Ok(0) => Feed::End,
            Ok(_) => Feed::Line(line),
            Err(e) => Feed::Failed(e),
        };
        let last = !matches!(fed, Feed::Line(_));
        if feed.send(fed).is_err() || last {
            return;
        }
    }
}

impl Read for EndableInput {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for EndableInput {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.at >= self.line.len() && !self.ended {
            match self.feed.recv() {
                Ok(Feed::Line(line)) => {
                    self.line = line;
                    self.at = 0;
                }
                Ok(Feed::Failed(e)) => {
                    self.ended = true;
                    return Err(e);
                }
                Ok(Feed::End) | Err(_) => {
                    self.ended = true;
                    self.line.clear();
                    self.at = 0;
                }
            }
        }
        Ok(&self.line[self.at..])
    }

    fn consume(&mut self, amount: usize) {
        self.at = (self.at + amount).min(self.line.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(unix)]
    fn lines_pass_through_and_an_end_cuts_the_input_short() {
        // A source that never ends: only the end sent from elsewhere stops the reading.
        let (reader, mut writer) = std::os::unix::net::UnixStream::pair().expect("pair");
        std::io::Write::write_all(&mut writer, b"one\ntwo\n").expect("write");
        let (input, end) = EndableInput::spawn(io::BufReader::new(reader)).expect("spawn");
        let mut lines = input.lines();
        assert_eq!(lines.next().expect("one").expect("line"), "one");
        assert_eq!(lines.next().expect("two").expect("line"), "two");
        end.end();
        assert!(lines.next().is_none(), "the input ended");
        drop(writer);
    }
}
