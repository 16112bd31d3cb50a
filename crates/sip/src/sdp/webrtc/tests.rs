use super::*;
use crate::sdp::{self, Direction, parse};

/// An offer as Chromium 120+ sends it through JsSIP (ICE gathering
/// complete, so candidates inline; mDNS host candidate, srflx, tcp).
const CHROMIUM: &str = "v=0\r
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r
s=-\r
t=0 0\r
a=group:BUNDLE 0\r
a=extmap-allow-mixed\r
a=msid-semantic: WMS 6d4e9b6c-31a2-4a54-b4a3-8a0d3f0e4c11\r
m=audio 54321 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r
c=IN IP4 203.0.113.9\r
a=rtcp:9 IN IP4 0.0.0.0\r
a=candidate:1467250027 1 udp 2122260223 3e7b1c52-8f0a-4c9a-b0a4-1f2e3d4c5b6a.local 54321 typ host generation 0 network-id 1\r
a=candidate:842163049 1 udp 1686052607 203.0.113.9 54321 typ srflx raddr 0.0.0.0 rport 0 generation 0 network-id 1\r
a=candidate:3977455421 1 tcp 1518280447 192.168.1.20 9 typ host tcptype active generation 0 network-id 1\r
a=ice-ufrag:EsAw\r
a=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r
a=ice-options:trickle\r
a=fingerprint:sha-256 D2:FA:0E:C3:22:59:5E:14:95:69:92:3D:13:B4:84:24:2C:C2:A2:C0:3E:FD:34:8E:5E:EA:6F:AF:52:CE:E6:0F\r
a=setup:actpass\r
a=mid:0\r
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r
a=sendrecv\r
a=msid:6d4e9b6c-31a2-4a54-b4a3-8a0d3f0e4c11 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0\r
a=rtcp-mux\r
a=rtcp-rsize\r
a=rtpmap:111 opus/48000/2\r
a=rtcp-fb:111 transport-cc\r
a=fmtp:111 minptime=10;useinbandfec=1\r
a=rtpmap:63 red/48000/2\r
a=fmtp:63 111/111\r
a=rtpmap:9 G722/8000\r
a=rtpmap:0 PCMU/8000\r
a=rtpmap:8 PCMA/8000\r
a=rtpmap:13 CN/8000\r
a=rtpmap:110 telephone-event/48000\r
a=rtpmap:126 telephone-event/8000\r
a=ssrc:3735928559 cname:Jk2eN3m2wS9vTq1d\r
a=ssrc:3735928559 msid:6d4e9b6c-31a2-4a54-b4a3-8a0d3f0e4c11 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0\r
";

/// The same browser before ICE gathering ended (trickle): `c=0.0.0.0`,
/// port 9, no candidates; plus a video line in the bundle, and the
/// fingerprint and ICE credentials at session level (Firefox's habit).
const TRICKLE_VIDEO: &str = "v=0\r
o=mozilla...THIS_IS_SDPARTA-99.0 1 0 IN IP4 0.0.0.0\r
s=-\r
t=0 0\r
a=fingerprint:sha-256 0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9:0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9\r
a=ice-ufrag:ff01\r
a=ice-pwd:0123456789abcdef0123456789abcdef\r
a=group:BUNDLE 0 1\r
a=ice-options:trickle\r
m=audio 9 UDP/TLS/RTP/SAVPF 8 0 101\r
c=IN IP4 0.0.0.0\r
a=mid:0\r
a=setup:active\r
a=rtcp-mux\r
a=rtpmap:101 telephone-event/8000\r
a=sendrecv\r
m=video 9 UDP/TLS/RTP/SAVPF 96\r
c=IN IP4 0.0.0.0\r
a=mid:1\r
a=setup:actpass\r
a=rtpmap:96 VP8/90000\r
";

const CHROMIUM_FP: &str = "sha-256 D2:FA:0E:C3:22:59:5E:14:95:69:92:3D:13:B4:84:24:2C:C2:A2:C0:3E:FD:34:8E:5E:EA:6F:AF:52:CE:E6:0F";

struct Case {
    name: &'static str,
    sdp: &'static str,
    ufrag: &'static str,
    pwd: &'static str,
    setup: Setup,
    mid: &'static str,
    bundle: &'static [&'static str],
    candidates: usize,
    pts: &'static [u8],
    te: Option<u8>,
    direction: Direction,
    media: usize,
}

const CASES: &[Case] = &[
    Case {
        name: "chromium",
        sdp: CHROMIUM,
        ufrag: "EsAw",
        pwd: "P2uYro0UCOQ4zxjKXaWCBui1",
        setup: Setup::ActPass,
        mid: "0",
        bundle: &["0"],
        candidates: 3,
        pts: &[111, 63, 9, 0, 8, 13],
        te: Some(126),
        direction: Direction::SendRecv,
        media: 1,
    },
    Case {
        name: "trickle, session-level ICE and DTLS, bundled video",
        sdp: TRICKLE_VIDEO,
        ufrag: "ff01",
        pwd: "0123456789abcdef0123456789abcdef",
        setup: Setup::Active,
        mid: "0",
        bundle: &["0", "1"],
        candidates: 0,
        pts: &[8, 0],
        te: Some(101),
        // c=0.0.0.0 with ICE is no hold
        direction: Direction::SendRecv,
        media: 2,
    },
];

#[test]
fn parses_browser_offers() {
    for c in CASES {
        let n = c.name;
        let d = parse(c.sdp.as_bytes()).unwrap_or_else(|e| panic!("{n}: {e}"));
        assert!(d.is_webrtc(), "{n}");
        assert!(!d.is_savp(), "{n}: not SDES");
        assert!(d.rtcp_mux, "{n}");
        let t = &d.webrtc;
        assert_eq!(t.ice_ufrag.as_deref(), Some(c.ufrag), "{n}");
        assert_eq!(t.ice_pwd.as_deref(), Some(c.pwd), "{n}");
        assert_eq!(t.ice_options, ["trickle"], "{n}");
        assert!(!t.ice_lite, "{n}");
        assert_eq!(t.setup, Some(c.setup), "{n}");
        assert_eq!(t.mid.as_deref(), Some(c.mid), "{n}");
        assert_eq!(t.bundle, c.bundle, "{n}");
        assert_eq!(t.candidates.len(), c.candidates, "{n}");
        assert_eq!(t.fingerprints.len(), 1, "{n}");
        assert_eq!(t.fingerprints[0].hash, HashFunction::Sha256, "{n}");
        let pts: Vec<u8> = d.codecs.iter().map(|c| c.payload_type).collect();
        assert_eq!(pts, c.pts, "{n}");
        assert_eq!(d.telephone_event, c.te, "{n}");
        assert_eq!(d.direction, c.direction, "{n}");
        assert_eq!(d.media.len(), c.media, "{n}");
        assert_eq!(d.media[0].mid.as_deref(), Some("0"), "{n}");
    }
}

#[test]
fn chromium_details() {
    let d = parse(CHROMIUM.as_bytes()).unwrap();
    let t = &d.webrtc;
    assert_eq!(t.fingerprints[0].to_string(), CHROMIUM_FP);
    assert_eq!(
        t.candidates[0],
        Candidate {
            component: 1,
            transport: "udp".into(),
            priority: 2122260223,
            address: "3e7b1c52-8f0a-4c9a-b0a4-1f2e3d4c5b6a.local".into(),
            port: 54321,
            typ: "host".into(),
        }
    );
    assert_eq!(t.candidates[0].ip(), None, "mDNS name");
    assert_eq!(t.candidates[1].ip(), Some("203.0.113.9".parse().unwrap()));
    assert_eq!(t.candidates[1].typ, "srflx");
    assert_eq!(t.candidates[2].transport, "tcp");
    // PCMU comes before PCMA in Chromium's list; Opus is not ours (yet)
    let chosen = sdp::choose_codec(&d, &["PCMU", "PCMA"]).unwrap();
    assert_eq!((chosen.payload_type, chosen.name.as_str()), (0, "PCMU"));
}

#[test]
fn phones_sdp_has_no_webrtc_transport() {
    let plain = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    let d = parse(plain.as_bytes()).unwrap();
    assert!(!d.is_webrtc());
    assert_eq!(d.webrtc, Transport::default());
    assert_eq!(d.media[0].mid, None);
}

#[test]
fn fingerprint_values() {
    let sha256 = |b: u8| vec![b; 32];
    type Want = Option<(HashFunction, Vec<u8>)>;
    let cases: &[(&str, Want)] = &[
        (
            CHROMIUM_FP,
            parse(CHROMIUM.as_bytes()).ok().map(|d| {
                let f = &d.webrtc.fingerprints[0];
                (f.hash, f.digest.clone())
            }),
        ),
        (
            "SHA-256 ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB",
            Some((HashFunction::Sha256, sha256(0xab))),
        ),
        // sha-1 is not accepted, nor a short or long digest, nor junk
        (
            "sha-1 00:11:22:33:44:55:66:77:88:99:00:11:22:33:44:55:66:77:88:99",
            None,
        ),
        ("sha-256 AB:CD", None),
        ("sha-256", None),
        ("", None),
        (
            "sha-256 ZZ:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB",
            None,
        ),
        (
            "sha-256 ABC:B:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB",
            None,
        ),
        (
            "sha-256 +1:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB",
            None,
        ),
    ];
    for (text, want) in cases {
        let got = Fingerprint::parse(text).map(|f| (f.hash, f.digest));
        assert_eq!(&got, want, "{text:?}");
    }
    let der = b"not really a certificate";
    let fp = Fingerprint::sha256(der);
    assert!(fp.matches(der));
    assert!(!fp.matches(b"another one"));
    assert_eq!(Fingerprint::parse(&fp.to_string()), Some(fp));
}

#[test]
fn setup_and_candidates() {
    for (v, want) in [
        ("actpass", Some(Setup::ActPass)),
        ("ACTIVE", Some(Setup::Active)),
        (" passive ", Some(Setup::Passive)),
        ("holdconn", Some(Setup::HoldConn)),
        ("both", None),
    ] {
        assert_eq!(Setup::parse(v), want, "{v}");
    }
    assert!(answerable_setup(Some(Setup::ActPass)).is_ok());
    assert!(answerable_setup(Some(Setup::Active)).is_ok());
    assert!(answerable_setup(Some(Setup::Passive)).is_err());
    assert!(answerable_setup(None).is_err());
    for bad in [
        "",
        "1 1 udp",
        "1 x udp 1 10.0.0.1 5 typ host",
        "1 1 udp 1 10.0.0.1 99999 typ host",
        "1 1 udp 1 10.0.0.1 5 type host",
        "1 1 udp 1 10.0.0.1 5 typ",
    ] {
        assert_eq!(Candidate::parse(bad), None, "{bad:?}");
    }
}

fn local4() -> LocalMedia {
    LocalMedia {
        address: "198.51.100.2".parse().unwrap(),
        port: 30000,
        session_id: 42,
        version: 1,
    }
}

#[test]
fn answer_to_chromium_exact_text() {
    let d = parse(CHROMIUM.as_bytes()).unwrap();
    let fp = Fingerprint {
        hash: HashFunction::Sha256,
        digest: (0..32).collect(),
    };
    let ours = LocalTransport {
        ice_ufrag: "AbCd1234",
        ice_pwd: "abcdefghijklmnopqrstuvwx",
        fingerprint: &fp,
        ssrc: 7,
        cname: "sess@198.51.100.2",
    };
    let text = answer(&local4(), &d, (0, "PCMU"), 20, &ours);
    assert_eq!(
        text,
        "v=0\r\n\
         o=switchboard 42 1 IN IP4 198.51.100.2\r\n\
         s=switchboard\r\n\
         c=IN IP4 198.51.100.2\r\n\
         t=0 0\r\n\
         a=ice-lite\r\n\
         a=group:BUNDLE 0\r\n\
         m=audio 30000 UDP/TLS/RTP/SAVPF 0 126\r\n\
         a=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:126 telephone-event/8000\r\n\
         a=fmtp:126 0-16\r\n\
         a=ptime:20\r\n\
         a=sendrecv\r\n\
         a=mid:0\r\n\
         a=ice-ufrag:AbCd1234\r\n\
         a=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
         a=fingerprint:sha-256 00:01:02:03:04:05:06:07:08:09:0A:0B:0C:0D:0E:0F:10:11:12:13:14:15:16:17:18:19:1A:1B:1C:1D:1E:1F\r\n\
         a=setup:passive\r\n\
         a=rtcp-mux\r\n\
         a=rtcp:30000 IN IP4 198.51.100.2\r\n\
         a=candidate:1 1 udp 2130706431 198.51.100.2 30000 typ host\r\n\
         a=end-of-candidates\r\n\
         a=ssrc:7 cname:sess@198.51.100.2\r\n"
    );
    // and it reads back as a WebRTC description of ours
    let back = parse(text.as_bytes()).unwrap();
    assert!(back.is_webrtc());
    assert!(back.webrtc.ice_lite);
    assert_eq!(back.webrtc.setup, Some(Setup::Passive));
    assert_eq!(back.webrtc.fingerprints, std::slice::from_ref(&fp));
    assert_eq!(back.webrtc.ice_ufrag.as_deref(), Some("AbCd1234"));
    assert_eq!(back.webrtc.bundle, ["0"]);
    assert_eq!(back.webrtc.candidates.len(), 1);
    assert_eq!(
        back.remote_rtp(),
        Some("198.51.100.2:30000".parse().unwrap())
    );
    for dropped in ["extmap", "rtcp-fb", "msid", "opus", "rtcp-rsize", "trickle"] {
        assert!(!text.contains(dropped), "{dropped} answered");
    }
}

#[test]
fn answer_declines_bundled_video_and_keeps_its_mid() {
    let d = parse(TRICKLE_VIDEO.as_bytes()).unwrap();
    let fp = Fingerprint::sha256(b"x");
    let ours = LocalTransport {
        ice_ufrag: "u",
        ice_pwd: "p",
        fingerprint: &fp,
        ssrc: 1,
        cname: "c",
    };
    let text = answer(&local4(), &d, (8, "PCMA"), 20, &ours);
    assert!(text.contains("a=group:BUNDLE 0\r\n"), "{text}");
    assert!(
        text.contains("m=audio 30000 UDP/TLS/RTP/SAVPF 8 101\r\n"),
        "{text}"
    );
    assert!(
        text.ends_with("m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n"),
        "{text}"
    );
    let back = parse(text.as_bytes()).unwrap();
    assert_eq!(back.media.len(), 2);
    assert_eq!(back.media[1].port, 0);
}

#[test]
fn hostile_values_stay_on_their_line() {
    // a mid or ufrag cannot smuggle a line into our answer: values are cut
    // at whitespace by the parser and kept to visible characters
    let evil = CHROMIUM.replace("a=mid:0\r\n", "a=mid:0\u{7f}x\r\n");
    let d = parse(evil.as_bytes()).unwrap();
    assert_eq!(d.webrtc.mid.as_deref(), Some("0x"));
    let fp = Fingerprint::sha256(b"x");
    let ours = LocalTransport {
        ice_ufrag: "u",
        ice_pwd: "p",
        fingerprint: &fp,
        ssrc: 1,
        cname: "c\r\na=evil",
    };
    let text = answer(&local4(), &d, (0, "PCMU"), 20, &ours);
    assert!(!text.contains("\r\na=evil"), "{text}");
}

#[test]
fn random_credentials_are_ice_chars_and_differ() {
    let (u1, p1) = random_credentials();
    let (u2, p2) = random_credentials();
    assert_eq!((u1.len(), p1.len()), (8, 24));
    assert!(u1 != u2 || p1 != p2);
    assert!(
        (u1 + &p1 + &u2 + &p2)
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/')
    );
}

#[test]
fn offer_to_a_browser_reads_back() {
    let fp = Fingerprint {
        hash: HashFunction::Sha256,
        digest: (0..32).collect(),
    };
    let ours = LocalTransport {
        ice_ufrag: "AbCd1234",
        ice_pwd: "abcdefghijklmnopqrstuvwx",
        fingerprint: &fp,
        ssrc: 7,
        cname: "sess@198.51.100.2",
    };
    let text = offer(
        &local4(),
        &[(0, "PCMU", 8000), (8, "PCMA", 8000)],
        Some(101),
        crate::sdp::Direction::SendRecv,
        20,
        OFFER_MID,
        &ours,
    );
    for line in [
        "a=ice-lite\r\n",
        "a=group:BUNDLE 0\r\n",
        "m=audio 30000 UDP/TLS/RTP/SAVPF 0 8 101\r\n",
        "a=rtpmap:101 telephone-event/8000\r\n",
        "a=mid:0\r\n",
        "a=setup:actpass\r\n",
        "a=rtcp-mux\r\n",
        "a=candidate:1 1 udp 2130706431 198.51.100.2 30000 typ host\r\n",
    ] {
        assert!(text.contains(line), "{line:?} in\n{text}");
    }
    let back = parse(text.as_bytes()).unwrap();
    assert!(back.is_webrtc() && back.rtcp_mux && back.webrtc.ice_lite);
    assert_eq!(back.webrtc.setup, Some(Setup::ActPass));
    assert_eq!(back.webrtc.fingerprints, std::slice::from_ref(&fp));
    assert_eq!(back.webrtc.mid.as_deref(), Some("0"));
    assert_eq!(back.webrtc.bundle, ["0"]);
    assert_eq!(back.codecs.len(), 2);
    assert_eq!(back.telephone_event, Some(101));
}

#[test]
fn answered_setup_keeps_us_the_server() {
    assert!(answered_setup(Some(Setup::Active)).is_ok());
    assert!(answered_setup(None).is_ok());
    assert!(answered_setup(Some(Setup::Passive)).is_err());
    assert!(answered_setup(Some(Setup::ActPass)).is_err());
}
