use super::*;

#[test]
fn key_tag_of_rfc_example() {
    // RFC 4034 section 5.4's DNSKEY for dskey.example.com. has key tag 60485.
    let public = base64::engine::general_purpose::STANDARD
        .decode("AQOeiiR0GOMYkDshWoSKz9XzfwJr1AYtsmx3TGkJaNXVbfi/2pHm822aJ5iI9BMzNXxeYCmZDRD99WYwYqUSdjMmmAphXdvxegXd/M5+X7OrzKBaMbCVdFLUUh6DhweJBjEVv5f2wwjM9XzcnOf+EPbtG9DMBmADjFDc2w/rljwvFw==")
        .unwrap();
    let mut rdata = vec![1, 0, 3, 5];
    rdata.extend_from_slice(&public);
    assert_eq!(key_tag(&rdata), 60485);
}

#[test]
fn validity_is_the_same_all_week_and_aligned_on_thursdays() {
    // 2026-11-26 was a Thursday.
    let thursday = 1_795_651_200;
    let v = Validity::at(thursday + 3600);
    assert_eq!(v, Validity::at(thursday + 6 * 86_400 + 86_399));
    assert_eq!(u64::from(v.inception), thursday - WEEK);
    assert_eq!(u64::from(v.expiration), thursday + 2 * WEEK);
    assert_ne!(v, Validity::at(thursday + WEEK));
}

#[test]
fn canonical_form_lowercases_rdata_names_and_sorts() {
    let a = RRset::new(rtype::CNAME, 60, [&b"\x03WWW\x02Ex\x00"[..]]);
    let mut out = Vec::new();
    canonical_rrset(b"\x01a\x00", &a, 60, &mut out);
    assert_eq!(&out[3..], b"\x00\x05\x00\x00\x00\x3c\x00\x08\x03www\x02ex\x00");
    let b = RRset::new(rtype::A, 60, [&[10, 0, 0, 2][..], &[10, 0, 0, 1][..]]);
    canonical_rrset(b"\x01a\x00", &b, 60, &mut out);
    assert_eq!(&out[9..], &[0, 4, 10, 0, 0, 1, 0, 4, 10, 0, 0, 2]);
}

#[test]
fn keygen_writes_a_private_file_only_its_owner_reads_and_loads_back() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = crate::testutil::TempDir::new("keygen");
    let keys = dir.path().join("keys");
    let apex = Name::parse("Example.COM.", None).unwrap();
    for alg in [ALG_ECDSAP256SHA256, ALG_ED25519] {
        let key = keygen(&keys, &apex, alg).unwrap();
        let private = keys.join(format!("{}.private", key_stem(&apex, alg, key.tag)));
        assert_eq!(std::fs::metadata(&private).unwrap().permissions().mode() & 0o777, 0o600);
        let back = read_key_file(&private).unwrap();
        assert_eq!(back.dnskey, key.dnskey);
        assert_eq!(back.tag, key.tag);
        assert!(dnskey_line(&apex, &key).starts_with(&format!("example.com. 3600 IN DNSKEY 257 3 {alg} ")));
        assert!(ds_line(&apex, &key).starts_with(&format!("example.com. 3600 IN DS {} {alg} 2 ", key.tag)));
    }
    assert_eq!(std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(zone_keys_in(&keys, &apex).unwrap().len(), 2);
    std::fs::write(keys.join("Kexample.com.+013+00001.private"), "junk").unwrap();
    assert!(zone_keys_in(&keys, &apex).is_err());
}

#[test]
fn signatures_verify_with_the_published_key() {
    let dir = crate::testutil::TempDir::new("sign");
    let apex = Name::parse("ex.", None).unwrap();
    for alg in [ALG_ECDSAP256SHA256, ALG_ED25519] {
        let key = keygen(dir.path(), &apex, alg).unwrap();
        let public = key.dnskey[4..].to_vec();
        let zone = ZoneKeys {
            apex: apex.clone(),
            dnskey: RRset::new(rtype::DNSKEY, 3600, [&key.dnskey[..]]),
            keys: vec![key],
        };
        let set = RRset::new(rtype::A, 60, [&[192, 0, 2, 1][..]]);
        let mut canonical = Vec::new();
        canonical_rrset(b"\x03www\x02ex\x00", &set, 60, &mut canonical);
        let v = Validity::at(1_795_651_200);
        let sig = sign(&zone, &canonical, v).unwrap();
        let rd = sig.rdatas().next().unwrap();
        let signer_end = 18 + apex.as_wire().len();
        let mut data = rd[..signer_end].to_vec();
        data.extend_from_slice(b"\x03www\x02ex\x00\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\xc0\x00\x02\x01");
        let (verify_alg, public): (&dyn ring::signature::VerificationAlgorithm, Vec<u8>) = if alg == ALG_ED25519 {
            (&ring::signature::ED25519, public)
        } else {
            (&ring::signature::ECDSA_P256_SHA256_FIXED, [&[4u8][..], &public].concat())
        };
        ring::signature::UnparsedPublicKey::new(verify_alg, &public).verify(&data, &rd[signer_end..]).unwrap();
        assert_eq!(rd[3], 2, "labels of www.ex.");
    }
}
