"""The response is tokenised as the continuation of the prompt: exactly the ids the model sees at inference."""
from megapmc.data.tokenizer import build_tokenizer
from megapmc.sft.preprocess import encode_samples
from megapmc.sft.template import format_answer, mcq_prompt


def test_response_tokens_continue_the_prompt_without_a_word_start_piece(spm_model):
    tokenizer = build_tokenizer(spm_model)
    prompt = mcq_prompt("Which electrolyte disturbance causes peaked T waves?",
                        {"A": "Hypokalaemia", "B": "Hyperkalaemia", "C": "Hypocalcaemia", "D": "Hypermagnesaemia"})
    response = format_answer("B", "Potassium excess speeds repolarisation.")
    [(tokens, mask)], fallbacks = encode_samples([prompt], [response], tokenizer)
    assert fallbacks == 0
    prompt_ids = tokenizer.encode(prompt)
    n_prompt = 1 + len(prompt_ids)
    assert tokens[0] == tokenizer.bos_id and tokens[1:n_prompt].tolist() == prompt_ids  # what generation feeds
    assert mask[:n_prompt].sum() == 0 and mask[n_prompt:].all()
    assert tokens[-1] == tokenizer.eos_id
    response_ids = tokens[n_prompt:-1].tolist()
    assert response_ids == tokenizer.encode(prompt + response)[len(prompt_ids):]
    assert tokenizer.decode(prompt_ids + response_ids) == tokenizer.decode(tokenizer.encode(prompt + response))
    piece = tokenizer._sp.id_to_piece
    assert not piece(response_ids[0]).startswith("▁")  # "###" right after "### Response:", no space
    # What encoding the response alone gave (the old way): a word-start piece the model never sees there.
    assert piece(tokenizer.encode(response)[0]).startswith("▁")


def test_a_pair_whose_joint_encoding_crosses_the_boundary_falls_back_and_is_counted(word_tokenizer):
    # Whitespace words: "Response:" and "###Answer:" fuse into one word when joined, so the joint encoding
    # does not start with the prompt's own ids; the prompt keeps them and the response is encoded alone.
    samples, fallbacks = encode_samples(["### Response:"], ["###Answer: yes"], word_tokenizer)
    (tokens, mask), = samples
    assert fallbacks == 1
    assert word_tokenizer.decode(tokens.tolist()) == "<1> ### Response: ###Answer: yes <2>"
    assert mask.tolist() == [0, 0, 0, 1, 1, 1]
