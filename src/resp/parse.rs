//! RESP2 requests in, replies out. A request is an array of bulk strings
//! (what every client library sends) or an inline line (what a human types
//! into `telnet`).

use crate::apply::kv::KV_ITEM_MAX;

/// Arguments per request, at most.
pub const RESP_ARGS_MAX: usize = 1 << 20;
/// Bytes per bulk string, at most (a key or value must fit a log record).
pub const RESP_BULK_MAX: usize = KV_ITEM_MAX;
/// Bytes of an inline request line, at most.
const INLINE_MAX: usize = 64 << 10;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RespError {
    #[error("Protocol error: expected '{expected}', got '{got}'")]
    Unexpected { expected: char, got: char },
    #[error("Protocol error: invalid {what} length")]
    BadLength { what: &'static str },
    #[error("Protocol error: {what} of {len} exceeds the limit of {max}")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("Protocol error: a bulk string does not end with CRLF")]
    MissingCrlf,
}

/// A parsed request's arguments and the bytes it took.
pub type Parsed = Option<(Vec<Vec<u8>>, usize)>;

/// Parses one request from the front of `buf`: `Ok(None)` until it is all
/// there; then its arguments and the bytes it took.
pub fn parse_command(buf: &[u8]) -> Result<Parsed, RespError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if first != b'*' {
        return parse_inline(buf);
    }
    let Some((count, mut at)) = number_line(buf, 1, "multibulk")? else {
        return Ok(None);
    };
    if count < 0 {
        return Ok(Some((Vec::new(), at)));
    }
    let count = count as usize;
    if count > RESP_ARGS_MAX {
        return Err(RespError::TooLarge {
            what: "multibulk",
            len: count,
            max: RESP_ARGS_MAX,
        });
    }
    let mut args = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let Some(&tag) = buf.get(at) else {
            return Ok(None);
        };
        if tag != b'$' {
            return Err(RespError::Unexpected {
                expected: '$',
                got: tag as char,
            });
        }
        let Some((len, body)) = number_line(buf, at + 1, "bulk")? else {
            return Ok(None);
        };
        if len < 0 {
            return Err(RespError::BadLength { what: "bulk" });
        }
        let len = len as usize;
        if len > RESP_BULK_MAX {
            return Err(RespError::TooLarge {
                what: "bulk string",
                len,
                max: RESP_BULK_MAX,
            });
        }
        if buf.len() < body + len + 2 {
            return Ok(None);
        }
        if &buf[body + len..body + len + 2] != b"\r\n" {
            return Err(RespError::MissingCrlf);
        }
        args.push(buf[body..body + len].to_vec());
        at = body + len + 2;
    }
    Ok(Some((args, at)))
}

/// `<digits>\r\n` starting at `from`: the number and where the next line starts.
fn number_line(
    buf: &[u8],
    from: usize,
    what: &'static str,
) -> Result<Option<(i64, usize)>, RespError> {
    let Some(end) = find_crlf(buf, from) else {
        if buf.len() - from > 32 {
            return Err(RespError::BadLength { what });
        }
        return Ok(None);
    };
    let n = std::str::from_utf8(&buf[from..end])
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or(RespError::BadLength { what })?;
    Ok(Some((n, end + 2)))
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| from + p)
}

fn parse_inline(buf: &[u8]) -> Result<Parsed, RespError> {
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > INLINE_MAX {
            return Err(RespError::TooLarge {
                what: "inline request",
                len: buf.len(),
                max: INLINE_MAX,
            });
        }
        return Ok(None);
    };
    let line = &buf[..nl];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let args = line
        .split(|b| b.is_ascii_whitespace())
        .filter(|a| !a.is_empty())
        .map(|a| a.to_vec())
        .collect();
    Ok(Some((args, nl + 1)))
}

/// A RESP2 reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Simple(&'static str),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

impl Reply {
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Reply::Simple(s) => {
                out.push(b'+');
                out.extend_from_slice(s.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            Reply::Error(e) => {
                out.push(b'-');
                // An error line must not break the framing.
                out.extend(
                    e.bytes()
                        .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
                );
                out.extend_from_slice(b"\r\n");
            }
            Reply::Int(i) => {
                out.extend_from_slice(format!(":{i}\r\n").as_bytes());
            }
            Reply::Bulk(None) => out.extend_from_slice(b"$-1\r\n"),
            Reply::Bulk(Some(b)) => {
                out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            Reply::Array(items) => {
                out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
                items.iter().for_each(|i| i.write_to(out));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_parse_whole_and_wait_when_cut() {
        let req = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n";
        let (args, used) = parse_command(req).unwrap().unwrap();
        assert_eq!(
            args,
            vec![b"SET".to_vec(), b"k".to_vec(), b"hello".to_vec()]
        );
        assert_eq!(used, req.len());
        for cut in 0..req.len() {
            assert_eq!(parse_command(&req[..cut]).unwrap(), None, "cut at {cut}");
        }
    }

    #[test]
    fn inline_requests_split_on_spaces() {
        let (args, used) = parse_command(b"PING  hi\r\nrest").unwrap().unwrap();
        assert_eq!(args, vec![b"PING".to_vec(), b"hi".to_vec()]);
        assert_eq!(used, 10);
    }

    #[test]
    fn malformed_requests_are_errors() {
        assert!(parse_command(b"*1\r\n+x\r\n").is_err());
        assert!(parse_command(b"*x\r\n").is_err());
        assert!(parse_command(b"*1\r\n$3\r\nabcde\r\n").is_err());
        assert!(parse_command(b"*1\r\n$-5\r\n").is_err());
        assert!(parse_command(b"*1\r\n$99999999999\r\n").is_err());
        assert!(parse_command(b"*2000000000\r\n").is_err());
    }

    #[test]
    fn replies_encode_as_resp2() {
        let mut out = Vec::new();
        Reply::Array(vec![
            Reply::Bulk(Some(b"v".to_vec())),
            Reply::Bulk(None),
            Reply::Int(3),
            Reply::Simple("OK"),
            Reply::Error("ERR a\r\nb".into()),
        ])
        .write_to(&mut out);
        assert_eq!(out, b"*5\r\n$1\r\nv\r\n$-1\r\n:3\r\n+OK\r\n-ERR a  b\r\n");
    }
}
