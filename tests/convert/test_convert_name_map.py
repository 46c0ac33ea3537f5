"""The name table covers exactly the parameters of transformers' and megapmc's LLaMA."""
from convert_fixtures import make_hf_model

from megapmc.convert.name_map import all_params, hf_names
from megapmc.model import LlamaConfig, build_model


def test_hf_names_are_llama_for_causal_lm_parameters():
    model = make_hf_model()
    assert sorted(hf_names(2)) == sorted(model.state_dict())


def test_megapmc_names_are_llama_model_parameters():
    model = build_model(LlamaConfig.from_name("tiny"), device="meta")
    assert [s.megapmc for s in all_params(2)] == list(model.state_dict())


def test_meta_names_are_unique_and_complete():
    meta = [n for s in all_params(3) for n in s.meta]
    assert len(meta) == len(set(meta)) == 3 + 3 * 9


def test_each_fused_parameter_has_one_name_per_block_of_its_layout():
    from megapmc.convert.sharding import model_layouts

    layouts = model_layouts(LlamaConfig.from_name("tiny"))
    for spec in all_params(2):
        assert len(layouts[spec.megapmc].part_shapes()) == len(spec.hf) == len(spec.meta), spec.megapmc
