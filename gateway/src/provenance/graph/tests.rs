use super::*;

fn alert(r: &str, headers: &[(&str, &str)]) -> v1::Alert {
    v1::Alert {
        r#ref: r.into(),
        mesh_key: "ZTF:ZTF18aabcdef".into(),
        headers: headers
            .iter()
            .map(|(k, v)| v1::Header {
                key: (*k).into(),
                value: Some(v.as_bytes().to_vec().into()),
            })
            .collect(),
        ..Default::default()
    }
}

fn edges(g: &v1::ProvenanceGraph, kind: &str) -> Vec<(String, String)> {
    g.edges
        .iter()
        .filter(|e| e.kind == kind)
        .map(|e| (e.from.clone(), e.to.clone()))
        .collect()
}

#[test]
fn a_derived_record_gives_its_activity_inputs_agent_and_used_things() {
    let me = "am://c/class/0/4";
    let mut g = Graph::new(me, 100);
    let links = g.add_record(
        &alert(
            me,
            &[
                ("am-derived-from", "am://c/copy/0/1, am://a/ztf/2/9"),
                (
                    "am-activity",
                    r#"{"name":"classify","version":"1.2","parameters":{"k":3}}"#,
                ),
                ("am-used", r#"["catalog:gaia-dr3/4295806720"]"#),
                ("am-agent", r#"{"sub":"ampel","iss":"c"}"#),
                ("am-origin", me),
            ],
        ),
        "c",
    );
    assert_eq!(links.next, ["am://c/copy/0/1", "am://a/ztf/2/9"]);
    assert!(
        links.origins.is_empty(),
        "a published record is its own origin"
    );
    let g = g.finish();
    let e = &g.entities[0];
    assert_eq!(
        (e.kind.as_str(), e.resolved, e.topic.as_str()),
        ("derived", true, "class")
    );
    assert_eq!(g.activities.len(), 1);
    let a = &g.activities[0];
    assert_eq!((a.name.as_str(), a.version.as_str()), ("classify", "1.2"));
    assert_eq!(a.parameters, r#"{"k":3}"#);
    assert_eq!(g.used[0].id, "catalog:gaia-dr3/4295806720");
    assert_eq!(g.agents[0].id, "ampel@c");
    assert_eq!(edges(&g, "derived_from").len(), 2);
    assert_eq!(edges(&g, "used").len(), 3, "two refs and the catalog row");
    assert_eq!(edges(&g, "generated_by"), [(me.to_owned(), a.id.clone())]);
    assert_eq!(
        edges(&g, "associated_with"),
        [(a.id.clone(), "ampel@c".to_owned())]
    );
    assert_eq!(
        edges(&g, "attributed_to"),
        [(me.to_owned(), "ampel@c".to_owned())]
    );
    assert!(!g.cycle);
}

#[test]
fn a_raw_copy_points_outside_the_mesh_and_is_its_own_origin() {
    let me = "am://a/ztf.alerts/1/0";
    let mut g = Graph::new(me, 100);
    let links = g.add_record(
        &alert(
            me,
            &[
                ("am-source", "kafka://k1:9092,k2:9092/ztf.raw/1/0"),
                ("am-hops", "a"),
            ],
        ),
        "a",
    );
    assert_eq!(links, Links::default());
    let g = g.finish();
    let copy = &g.entities[0];
    assert_eq!((copy.kind.as_str(), copy.origin.as_str()), ("copy", me));
    let raw = &g.entities[1];
    assert_eq!(raw.kind, "external");
    assert!(!raw.resolved && raw.unresolved_reason.contains("outside the mesh"));
    assert_eq!(
        (raw.topic.as_str(), raw.partition, raw.offset),
        ("ztf.raw", 1, 0)
    );
    assert_eq!(
        edges(&g, "copied_from"),
        [(
            me.to_owned(),
            "kafka://k1:9092,k2:9092/ztf.raw/1/0".to_owned()
        )]
    );
    assert_eq!(
        edges(&g, "attributed_to"),
        [(me.to_owned(), "gateway:a".to_owned())]
    );
}

#[test]
fn a_copy_follows_its_source_and_origin_but_not_the_derivation_it_carries() {
    let me = "am://c/b.class/0/2";
    let mut g = Graph::new(me, 100);
    let links = g.add_record(
        &alert(
            me,
            &[
                ("am-source", "am://b/class/0/2"),
                ("am-origin", "am://b/class/0/2"),
                ("am-derived-from", "am://b/x/0/0"),
            ],
        ),
        "c",
    );
    assert_eq!(links.next, ["am://b/class/0/2"]);
    assert_eq!(links.origins, ["am://b/class/0/2"]);
    let g = g.finish();
    assert!(edges(&g, "derived_from").is_empty() && g.activities.is_empty());
    assert_eq!(edges(&g, "primary_source").len(), 1);
}

#[test]
fn merged_graphs_resolve_placeholders_and_keep_flags() {
    let mut g = Graph::new("am://c/t/0/0", 100);
    g.unresolved("am://a/t/0/0", "not reached");
    let mut other = Graph::new("am://b/t/0/0", 100);
    other.add_record(&alert("am://a/t/0/0", &[]), "a");
    other.flags().depth_limited = true;
    assert!(g.merge(other.finish(), "c").is_empty());
    let g = g.finish();
    assert_eq!(g.entities.len(), 1);
    assert!(g.entities[0].resolved && g.entities[0].resolved_by == "a");
    assert!(g.depth_limited);
}

#[test]
fn cycles_are_found_and_diamonds_are_not_cycles() {
    let mut g = Graph::new("am://c/t/0/1", 100);
    g.add_record(
        &alert(
            "am://c/t/0/1",
            &[("am-derived-from", "am://c/t/0/2,am://c/t/0/3")],
        ),
        "c",
    );
    g.add_record(
        &alert("am://c/t/0/2", &[("am-derived-from", "am://c/t/0/4")]),
        "c",
    );
    g.add_record(
        &alert("am://c/t/0/3", &[("am-derived-from", "am://c/t/0/4")]),
        "c",
    );
    assert!(!g.finish().cycle, "a diamond");

    let mut g = Graph::new("am://c/t/0/1", 100);
    g.add_record(
        &alert("am://c/t/0/1", &[("am-derived-from", "am://c/t/0/2")]),
        "c",
    );
    g.add_record(
        &alert("am://c/t/0/2", &[("am-derived-from", "am://c/t/0/1")]),
        "c",
    );
    let out = g.finish();
    assert!(out.cycle);
    let mut refs = out.cycle_refs.clone();
    refs.sort();
    assert_eq!(refs, ["am://c/t/0/1", "am://c/t/0/2"]);
}

#[test]
fn hostile_headers_stay_bounded_and_readable() {
    let many: Vec<String> = (0..5000).map(|i| format!("am://x/t/0/{i}")).collect();
    let mut g = Graph::new("am://c/t/0/0", 50);
    let links = g.add_record(
        &alert(
            "am://c/t/0/0",
            &[
                ("am-derived-from", &many.join(",")),
                ("am-activity", "not json"),
                ("am-agent", "[1]"),
                ("am-used", "catalog:x/1"),
            ],
        ),
        "c",
    );
    assert_eq!(links.next.len(), MAX_LINKS_PER_RECORD);
    for r in &links.next {
        g.unresolved(r, "test");
    }
    let out = g.finish();
    assert_eq!(out.entities.len(), 50);
    assert!(out.node_limited);
    assert!(out.edges.len() <= 50 * 8);
    assert_eq!(out.activities[0].name, "not json");
    assert_eq!(out.used[0].id, "catalog:x/1");
    assert!(out.agents.is_empty());
}

/// A peer's graph of few, huge strings: each is cut, and the whole graph holds at most
/// `MAX_GRAPH_BYTES` of text (the counts alone would allow gigabytes).
#[test]
fn a_peer_graph_of_long_strings_is_bounded_in_bytes() {
    let mut g = Graph::new("am://c/t/0/0", 2000);
    let long = |tag: usize| format!("{tag}:{}", "é".repeat(1 << 14));
    let peer = v1::ProvenanceGraph {
        entities: (0..200)
            .map(|i| v1::ProvEntity {
                id: long(i),
                key: long(i),
                unresolved_reason: long(i),
                hops: long(i),
                ..Default::default()
            })
            .collect(),
        edges: (0..4000)
            .map(|i| v1::ProvEdge {
                kind: "derived_from".into(),
                from: long(i),
                to: long(i + 1),
            })
            .collect(),
        activities: (0..100)
            .map(|i| v1::ProvActivity {
                id: long(i),
                parameters: long(i),
                ..Default::default()
            })
            .collect(),
        used: (0..100).map(|i| v1::ProvUsed { id: long(i) }).collect(),
        ..Default::default()
    };
    g.merge(peer, "c");
    let out = g.finish();
    assert!(out.node_limited, "cut short, and says so");
    let mut text = 0;
    for e in &out.entities {
        for s in [&e.id, &e.key, &e.unresolved_reason, &e.hops] {
            assert!(s.len() <= MAX_TEXT_BYTES, "{} bytes", s.len());
            text += s.len();
        }
    }
    for e in &out.edges {
        assert!(e.from.len() <= MAX_TEXT_BYTES && e.to.len() <= MAX_TEXT_BYTES);
        text += e.kind.len() + e.from.len() + e.to.len();
    }
    for a in &out.activities {
        assert!(a.parameters.len() <= MAX_TEXT_BYTES);
        text += a.id.len() + a.parameters.len();
    }
    for u in &out.used {
        text += u.id.len();
    }
    assert!(text <= MAX_GRAPH_BYTES, "{text} bytes of text kept");
    assert!(!out.entities.is_empty() && !out.edges.is_empty());
    // Cut at a character boundary: still valid UTF-8 all the way.
    assert!(out.entities[0].key.ends_with('é'));
}

/// A peer's graph may name this gateway's records (a derivation from them): they are not
/// taken from the peer (read with its credentials, or made up), but handed back for this
/// gateway to read itself; a peer's word on other gateways' records is merged.
#[test]
fn a_peer_does_not_resolve_this_gateways_records() {
    let mut g = Graph::new("am://b/t/0/0", 100);
    let mut other = Graph::new("am://b/t/0/0", 100);
    other.add_record(
        &alert("am://b/t/0/0", &[("am-derived-from", "am://c/secret/0/7")]),
        "b",
    );
    other.add_record(&alert("am://c/secret/0/7", &[]), "c");
    other.add_record(&alert("am://a/t/0/1", &[]), "a");
    other.add_record(&alert("am://c/query:rows/5", &[]), "c");
    let mine = g.merge(other.finish(), "c");
    assert_eq!(mine, vec!["am://c/secret/0/7", "am://c/query:rows/5"]);
    let out = g.finish();
    let ids: Vec<&str> = out.entities.iter().map(|e| e.id.as_str()).collect();
    assert!(
        ids.contains(&"am://b/t/0/0") && ids.contains(&"am://a/t/0/1"),
        "{ids:?}"
    );
    assert!(!ids.iter().any(|i| i.starts_with("am://c/")), "{ids:?}");
}

/// A record (written elsewhere) naming more inputs than a graph shows of one record: the
/// first ones are shown and the graph says it was cut.
#[test]
fn a_record_of_too_many_inputs_is_shown_cut_and_says_so() {
    let refs: Vec<String> = (0..=MAX_LINKS_PER_RECORD)
        .map(|i| format!("am://a/t/0/{i}"))
        .collect();
    let derived = refs.join(",");
    for (n, cut) in [
        (MAX_LINKS_PER_RECORD, false),
        (MAX_LINKS_PER_RECORD + 1, true),
    ] {
        let mut g = Graph::new("am://b/t/0/0", 5000);
        let header = if cut {
            derived.clone()
        } else {
            refs[..n].join(",")
        };
        let links = g.add_record(
            &alert(
                "am://b/t/0/0",
                &[
                    ("am-derived-from", header.as_str()),
                    ("am-activity", r#"{"name":"fit"}"#),
                ],
            ),
            "b",
        );
        assert_eq!(links.next.len(), MAX_LINKS_PER_RECORD);
        assert_eq!(g.finish().node_limited, cut, "{n} inputs");
    }
}
