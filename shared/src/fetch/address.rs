//! Which addresses the fetcher may connect to. Checked on the resolved address (never on the host
//! name), for every redirect hop, and the connection then goes to exactly the address checked.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is refused. `Private` ones become reachable with `allow_private` (tests); the
/// others never do: link-local holds cloud metadata services (169.254.169.254), and multicast,
/// broadcast and unspecified addresses are never a web server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Private,
    Loopback,
    LinkLocal,
    Multicast,
    Unspecified,
    Reserved,
}

impl Refusal {
    fn allowed_by_switch(self) -> bool {
        matches!(self, Refusal::Private | Refusal::Loopback)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Refusal::Private => "a private",
            Refusal::Loopback => "a loopback",
            Refusal::LinkLocal => "a link-local",
            Refusal::Multicast => "a multicast",
            Refusal::Unspecified => "an unspecified or broadcast",
            Refusal::Reserved => "a reserved",
        }
    }
}

/// `Err` with the reason when the fetcher must not connect to `ip`.
pub fn check(ip: IpAddr, allow_private: bool) -> Result<(), Refusal> {
    match classify(ip) {
        Some(r) if !(allow_private && r.allowed_by_switch()) => Err(r),
        _ => Ok(()),
    }
}

fn classify(ip: IpAddr) -> Option<Refusal> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Refusal> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, _, _) => Refusal::Unspecified, // "this network", incl. 0.0.0.0
        _ if ip.is_broadcast() => Refusal::Unspecified,
        (127, _, _) => Refusal::Loopback,
        (169, 254, _) => Refusal::LinkLocal,
        (224..=239, _, _) => Refusal::Multicast,
        (240..=255, _, _) => Refusal::Reserved,
        (10, _, _) | (192, 168, _) => Refusal::Private,
        (172, 16..=31, _) => Refusal::Private,
        (100, 64..=127, _) => Refusal::Private, // carrier-grade NAT
        (192, 0, 0) | (198, 18..=19, _) => Refusal::Private, // IETF assignments, benchmarking
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => Refusal::Reserved, // documentation
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<Refusal> {
    // IPv4 addresses wrapped in IPv6 are judged as what they wrap: ::ffff:127.0.0.1 is loopback.
    if let Some(v4) = embedded_v4(ip) {
        return classify_v4(v4);
    }
    let s = ip.segments();
    Some(match s[0] {
        _ if ip.is_unspecified() => Refusal::Unspecified,
        _ if ip.is_loopback() => Refusal::Loopback,
        0xff00..=0xffff => Refusal::Multicast,
        0xfe80..=0xfebf => Refusal::LinkLocal,
        0xfec0..=0xfeff => Refusal::Private, // deprecated site-local
        0xfc00..=0xfdff => Refusal::Private, // unique local
        0x2001 if s[1] == 0x0db8 => Refusal::Reserved, // documentation
        // The rest of ::/8 other than the forms above is not unicast on the internet.
        0 => Refusal::Reserved,
        _ => return None,
    })
}

/// The IPv4 address inside IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d), NAT64
/// (64:ff9b::a.b.c.d) and 6to4 (2002:aabb:ccdd::) addresses.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(tail),
        // ::1 and :: are IPv6's own loopback and unspecified, not IPv4-compatible addresses.
        [0, 0, 0, 0, 0, 0, hi, _] if hi != 0 => Some(tail),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(ip: &str, allow_private: bool) -> Option<Refusal> {
        check(ip.parse().unwrap(), allow_private).err()
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "172.32.0.1",
            "100.128.0.1",
        ] {
            assert_eq!(refused(ip, false), None, "{ip}");
        }
    }

    #[test]
    fn private_and_loopback_need_the_switch() {
        for (ip, why) in [
            ("127.0.0.1", Refusal::Loopback),
            ("127.8.9.10", Refusal::Loopback),
            ("::1", Refusal::Loopback),
            ("10.1.2.3", Refusal::Private),
            ("172.16.0.1", Refusal::Private),
            ("172.31.255.255", Refusal::Private),
            ("192.168.1.1", Refusal::Private),
            ("100.64.0.1", Refusal::Private),
            ("100.127.255.254", Refusal::Private),
            ("fc00::1", Refusal::Private),
            ("fd12:3456::1", Refusal::Private),
            ("::ffff:127.0.0.1", Refusal::Loopback),
            ("::ffff:10.0.0.1", Refusal::Private),
            ("64:ff9b::c0a8:0101", Refusal::Private),
            ("2002:c0a8:0101::1", Refusal::Private),
        ] {
            assert_eq!(refused(ip, false), Some(why), "{ip}");
            assert_eq!(refused(ip, true), None, "{ip} with the switch on");
        }
    }

    #[test]
    fn metadata_multicast_and_unspecified_are_always_refused() {
        for (ip, why) in [
            ("169.254.169.254", Refusal::LinkLocal),
            ("169.254.0.1", Refusal::LinkLocal),
            ("fe80::1", Refusal::LinkLocal),
            ("febf::1", Refusal::LinkLocal),
            ("::ffff:169.254.169.254", Refusal::LinkLocal),
            ("fd00:ec2::254", Refusal::Private),
            ("224.0.0.1", Refusal::Multicast),
            ("239.255.255.250", Refusal::Multicast),
            ("ff02::1", Refusal::Multicast),
            ("0.0.0.0", Refusal::Unspecified),
            ("0.1.2.3", Refusal::Unspecified),
            ("255.255.255.255", Refusal::Unspecified),
            ("::", Refusal::Unspecified),
            ("::ffff:0.0.0.0", Refusal::Unspecified),
            ("240.0.0.1", Refusal::Reserved),
        ] {
            assert_eq!(refused(ip, false), Some(why), "{ip}");
            if why != Refusal::Private {
                assert_eq!(refused(ip, true), Some(why), "{ip} with the switch on");
            }
        }
    }
}
