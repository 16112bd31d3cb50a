//! The SDP the RTP manager writes, read by webrtc-rs's `sdp` crate (a
//! strict RFC 4566 parser): every offer and answer must parse there and
//! say the same address, port, formats, rtpmap and direction.

#![allow(clippy::unwrap_used)]

use std::io::Cursor;
use std::net::IpAddr;

use sdp::SessionDescription;
use switchboard_sip::sdp::{self as ours, Direction, LocalMedia};

fn theirs(text: &str) -> SessionDescription {
    SessionDescription::unmarshal(&mut Cursor::new(text.as_bytes()))
        .unwrap_or_else(|e| panic!("webrtc-rs refused our SDP ({e}):\n{text}"))
}

fn local(ip: &str, port: u16) -> LocalMedia {
    LocalMedia {
        address: ip.parse::<IpAddr>().unwrap(),
        port,
        session_id: 4242,
        version: 3,
    }
}

fn check(text: &str, ip: &str, port: u16, formats: &[&str], rtpmaps: &[&str], dir: &str) {
    let s = theirs(text);
    let c = s.connection_information.as_ref().unwrap();
    assert_eq!(c.address.as_ref().unwrap().address, ip, "{text}");
    assert_eq!(c.address_type, if ip.contains(':') { "IP6" } else { "IP4" });
    assert_eq!(s.origin.session_id, 4242);
    assert_eq!(s.origin.session_version, 3);
    let m = &s.media_descriptions[0];
    assert_eq!(m.media_name.media, "audio");
    assert_eq!(m.media_name.port.value, port as isize);
    assert_eq!(m.media_name.protos, ["RTP", "AVP"]);
    assert_eq!(m.media_name.formats, formats, "{text}");
    let maps: Vec<&str> = m
        .attributes
        .iter()
        .filter(|a| a.key == "rtpmap")
        .filter_map(|a| a.value.as_deref())
        .collect();
    assert_eq!(maps, rtpmaps, "{text}");
    assert!(m.attribute(dir).is_some(), "no a={dir} in\n{text}");
}

#[test]
fn our_offers_parse_in_webrtc_rs() {
    for (ip, dir, name) in [
        ("127.0.0.1", Direction::SendRecv, "sendrecv"),
        ("::1", Direction::SendOnly, "sendonly"),
        ("2001:db8::7", Direction::Inactive, "inactive"),
    ] {
        let text = ours::offer(
            &local(ip, 10_000),
            &[(0, "PCMU"), (8, "PCMA")],
            Some(101),
            dir,
            20,
        );
        check(
            &text,
            ip,
            10_000,
            &["0", "8", "101"],
            &["0 PCMU/8000", "8 PCMA/8000", "101 telephone-event/8000"],
            name,
        );
        let s = theirs(&text);
        assert_eq!(
            s.media_descriptions[0].attribute("fmtp"),
            Some(Some("101 0-16"))
        );
        assert_eq!(s.media_descriptions[0].attribute("ptime"), Some(Some("20")));
    }
}

#[test]
fn our_answers_parse_in_webrtc_rs_and_decline_video() {
    // what linphone offers: audio with several codecs, plus video
    let offer = "v=0\r\no=linphone 1 1 IN IP4 192.0.2.10\r\ns=Talk\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n\
        m=audio 7078 RTP/AVP 96 0 8 101\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\n\
        a=sendonly\r\nm=video 9078 RTP/AVP 97\r\na=rtpmap:97 VP8/90000\r\n";
    let remote = ours::parse(offer.as_bytes()).unwrap();
    let chosen = ours::choose_codec(&remote, &["PCMU", "PCMA"])
        .unwrap()
        .clone();
    assert_eq!(chosen.name, "PCMU");
    let text = ours::answer(
        &local("127.0.0.1", 10_002),
        &remote,
        (chosen.payload_type, &chosen.name),
        None,
        20,
    );
    check(
        &text,
        "127.0.0.1",
        10_002,
        &["0", "101"],
        &["0 PCMU/8000", "101 telephone-event/8000"],
        "recvonly",
    );
    let s = theirs(&text);
    assert_eq!(
        s.media_descriptions.len(),
        2,
        "one answer line per offered line"
    );
    assert_eq!(s.media_descriptions[1].media_name.media, "video");
    assert_eq!(
        s.media_descriptions[1].media_name.port.value, 0,
        "video declined"
    );
}

#[test]
fn our_webrtc_answer_parses_in_webrtc_rs() {
    use ours::webrtc::{Fingerprint, LocalTransport};
    let offer = "v=0\r\no=- 46117 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111 0 8 126\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:EsAw\r\n\
        a=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\na=fingerprint:sha-256 D2:FA:0E:C3:22:59:5E:14:95:69:92:3D:13:B4:84:24:2C:C2:A2:C0:3E:FD:34:8E:5E:EA:6F:AF:52:CE:E6:0F\r\n\
        a=setup:actpass\r\na=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n\
        a=rtpmap:126 telephone-event/8000\r\n";
    let remote = ours::parse(offer.as_bytes()).unwrap();
    let fp = Fingerprint::sha256(b"certificate");
    let text = ours::webrtc::answer(
        &local("127.0.0.1", 10_004),
        &remote,
        (0, "PCMU"),
        20,
        &LocalTransport {
            ice_ufrag: "AbCd1234",
            ice_pwd: "abcdefghijklmnopqrstuvwx",
            fingerprint: &fp,
            ssrc: 99,
            cname: "x",
        },
    );
    let s = theirs(&text);
    assert!(s.attributes.iter().any(|a| a.key == "ice-lite"), "{text}");
    assert_eq!(s.attribute("group").map(String::as_str), Some("BUNDLE 0"));
    let m = &s.media_descriptions[0];
    assert_eq!(m.media_name.protos, ["UDP", "TLS", "RTP", "SAVPF"]);
    assert_eq!(m.media_name.formats, ["0", "126"]);
    assert_eq!(m.attribute("setup"), Some(Some("passive")));
    assert_eq!(m.attribute("mid"), Some(Some("0")));
    assert_eq!(m.attribute("ice-ufrag"), Some(Some("AbCd1234")));
    assert_eq!(
        m.attribute("fingerprint"),
        Some(Some(fp.to_string().as_str()))
    );
    assert!(m.attribute("rtcp-mux").is_some());
}
