//! `chmigrate render`: golden files for both modes, and the rendered
//! manifests applied for real give the same ledger checksums as the files.

mod support;

use std::path::Path;

use support::*;

fn compare(dir: &Path, golden: &str) {
    let golden = repo().join("tests/golden/render").join(golden);
    let mut want: Vec<String> = std::fs::read_dir(&golden)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let mut got: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got, want, "file names");
    for name in want {
        let a = std::fs::read_to_string(dir.join(&name)).unwrap();
        let b = std::fs::read_to_string(golden.join(&name)).unwrap();
        assert_eq!(
            a, b,
            "{name} differs from the golden file (regenerate with the command in tests/render.rs if the change is intended)"
        );
    }
}

#[test]
fn resources_match_the_golden_files() {
    // Regenerate: chmigrate render --dir examples/flyway --set web --namespace analytics --labels team=web --out tests/golden/render/flyway
    let out = tempfile::tempdir().unwrap();
    let r = chm(&[
        "render",
        "--dir",
        "examples/flyway",
        "--set",
        "web",
        "--namespace",
        "analytics",
        "--labels",
        "team=web",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.all());
    compare(out.path(), "flyway");
}

#[test]
fn configmaps_match_the_golden_files() {
    // Regenerate: chmigrate render --dir examples/updown --set sessions --namespace analytics --configmap --out tests/golden/render/updown-configmap
    let out = tempfile::tempdir().unwrap();
    let r = chm(&[
        "render",
        "--dir",
        "examples/updown",
        "--set",
        "sessions",
        "--namespace",
        "analytics",
        "--configmap",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stderr.contains("spec.configMaps: sessions-migrations"),
        "{}",
        r.stderr
    );
    compare(out.path(), "updown-configmap");
}

#[test]
fn rendered_manifests_apply_with_the_files_checksums() {
    require(&[SINGLE]);
    let (from_files, from_render) = (unique_db("rf"), unique_db("rr"));
    assert_eq!(
        chm(&[
            "--url",
            SINGLE,
            "--database",
            &from_files,
            "--dir",
            "examples/flyway",
            "migrate"
        ])
        .code,
        0
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert_eq!(
        chm(&[
            "render",
            "--dir",
            "examples/flyway",
            "--set",
            "web",
            "--namespace",
            "analytics",
            "--out",
            d
        ])
        .code,
        0
    );
    std::fs::write(
        dir.path().join("set.yaml"),
        format!(
            "apiVersion: chmigrate.io/v1alpha1\nkind: MigrationSet\nmetadata: {{name: web, namespace: analytics}}\nspec:\n  connection: {{url: '{SINGLE}', database: {from_render}, credentials: {{passwordless: true}}}}\n  selector: {{matchLabels: {{chmigrate.io/set: web}}}}\n"
        ),
    )
    .unwrap();
    let out = chm(&["apply", "-f", d]);
    assert_eq!(out.code, 0, "{}", out.all());
    let sums = |db: &str| -> Vec<String> {
        ledger(SINGLE, db)
            .iter()
            .filter(|r| r["event"] == "completed")
            .map(|r| format!("{} {}", r["version"], r["checksum"]))
            .collect()
    };
    assert_eq!(sums(&from_files), sums(&from_render));
    assert_eq!(tables(SINGLE, &from_files), tables(SINGLE, &from_render));
    drop_db(SINGLE, &from_files, false);
    drop_db(SINGLE, &from_render, false);
}
