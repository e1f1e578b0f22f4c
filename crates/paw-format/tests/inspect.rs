//! Snapshots of the inspection view `paw inspect` prints, on the committed fixtures.

mod common;

use common::repo_root;

fn inspect_fixture(name: &str) -> paw_format::Inspection {
    let bytes =
        std::fs::read(repo_root().join("fixtures/programs").join(name)).expect("fixture exists");
    paw_format::inspect(&bytes).expect("fixture inspects")
}

#[test]
fn inspection_json_of_prompt_only_fixture() {
    insta::assert_json_snapshot!("prompt_only_json", inspect_fixture("prompt-only.paw"));
}

#[test]
fn inspection_json_of_adapter_fixture() {
    insta::assert_json_snapshot!("adapter_mixed_json", inspect_fixture("adapter-mixed.paw"));
}

#[test]
fn inspection_json_of_multilingual_fixture() {
    insta::assert_json_snapshot!("multilingual_json", inspect_fixture("multilingual.paw"));
}

#[test]
fn inspection_human_form_of_adapter_fixture() {
    insta::assert_snapshot!(
        "adapter_mixed_human",
        inspect_fixture("adapter-mixed.paw").to_string()
    );
}

#[test]
fn inspection_id_matches_program_id() {
    let bytes = std::fs::read(repo_root().join("fixtures/programs/adapter-mixed.paw"))
        .expect("fixture exists");
    let (_, id) = paw_format::Program::from_bytes(&bytes).expect("reads");
    assert_eq!(
        paw_format::inspect(&bytes).expect("inspects").id,
        id.to_string()
    );
}

#[test]
fn inspection_shows_the_output_contract() {
    let inspection = inspect_fixture("labels-contract.paw");
    insta::assert_json_snapshot!("labels_contract_json", inspection);
    insta::assert_snapshot!("labels_contract_human", inspection.to_string());
}
