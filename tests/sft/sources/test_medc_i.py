from collections import Counter

from megapmc.sft.sources.common import Problems
from megapmc.sft.sources.medc_i import load_medc_i


def test_released_medc_i_is_taken_as_it_is(sample_sft_dir):
    stats = Counter()
    records = list(load_medc_i(sample_sft_dir / "medc_i_excerpt.json", Problems(), stats))
    assert len(records) == 4
    assert {r.source for r in records} == {"medc_i"}
    assert records[0].id == "medical_flashcards-17"
    assert records[2].output == "###Answer: OPTION B IS CORRECT."
    assert stats["published:umls"] == 1


def test_bad_released_records_have_line_numbers(tmp_path):
    path = tmp_path / "medc_i.json"
    path.write_text('[\n{"instruction": "i", "input": "", "output": "o", "source": "s", "sample_id": 1},\n'
                    '{"instruction": "i", "input": "",\n "source": "s", "sample_id": 2}\n]\n')
    problems = Problems()
    assert [r.id for r in load_medc_i(path, problems)] == ["s-1"]
    assert problems.examples == [f"{path}:3: missing key 'output'"]
