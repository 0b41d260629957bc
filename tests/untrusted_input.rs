//! Bytes from clients and peers are untrusted: decoders return errors, never
//! panic, and what encodes decodes back to itself.

use proptest::prelude::*;
use traft::apply::{KvCommand, KvReply};
use traft::resp::{parse_command, Reply};

fn item() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..40)
}

fn command() -> impl Strategy<Value = KvCommand> {
    prop_oneof![
        (item(), item()).prop_map(|(key, value)| KvCommand::Set { key, value }),
        item().prop_map(|key| KvCommand::Get { key }),
        item().prop_map(|key| KvCommand::Incr { key }),
        prop::collection::vec(item(), 1..5).prop_map(|keys| KvCommand::Del { keys }),
        prop::collection::vec(item(), 1..5).prop_map(|keys| KvCommand::MGet { keys }),
        prop::collection::vec((item(), item()), 1..5).prop_map(|pairs| KvCommand::MSet { pairs }),
    ]
}

fn resp_request(args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn resp_parser_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(Some((_, used))) = parse_command(&bytes) {
            prop_assert!(used <= bytes.len());
        }
    }

    #[test]
    fn resp_requests_parse_back_whole_and_wait_when_cut(
        args in prop::collection::vec(item(), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let req = resp_request(&args);
        let (parsed, used) = parse_command(&req).unwrap().unwrap();
        prop_assert_eq!(&parsed, &args);
        prop_assert_eq!(used, req.len());
        let at = cut.index(req.len());
        prop_assert_eq!(parse_command(&req[..at]).unwrap(), None);
    }

    #[test]
    fn kv_commands_round_trip(c in command()) {
        prop_assert_eq!(KvCommand::decode(&c.encode()).unwrap(), c);
    }

    #[test]
    fn kv_decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..120)) {
        let _ = KvCommand::decode(&bytes);
        let _ = KvReply::decode(&bytes);
    }

    #[test]
    fn replies_never_break_the_framing(e in ".{0,40}") {
        let mut out = Vec::new();
        Reply::Error(e).write_to(&mut out);
        prop_assert!(out.starts_with(b"-") && out.ends_with(b"\r\n"));
        prop_assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
    }
}
