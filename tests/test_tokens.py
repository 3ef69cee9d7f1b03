from holysheep_lab.core.tokens import MIN_OBSERVATIONS, InputSize, TokenEstimator, measure_messages

THAI = "สวัสดีครับ วันนี้อากาศดีมาก " * 20
CHINESE = "今天天气很好，我们去公园散步吧。" * 20
CODE = "def f(x):\n    return [i ** 2 for i in range(x) if i % 3]\n" * 20


def test_bound_is_at_least_utf8_bytes_for_any_script():
    for text in (THAI, CHINESE, CODE, "hello " * 100):
        size = measure_messages([{"role": "user", "content": text}])
        assert size.safe_bound() >= len(text.encode())
        # the seed's chars/4 undercounts Thai and Chinese several-fold; bytes do not
        assert size.safe_bound() >= len(text) // 4 * (3 if not text.isascii() else 1)


def test_prose_words_images_and_tools():
    english = measure_messages([{"role": "user", "content": "the cat sat on the mat " * 40}])
    # every word (its space included), and the role "user"; not the trailing space
    assert english.words == 6 * 40 + 1 and english.word_bytes == len("the cat sat on the mat " * 40) - 1 + len("user")
    assert measure_messages([{"role": "user", "content": THAI}]).words == 1  # the role; Thai: bytes
    assert measure_messages([{"role": "user", "content": "xqz " * 40}]).words == 1  # "xqz" is no word
    size = measure_messages(
        [{"role": "user", "content": [{"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": "data:..."}}]}],
        tools=[{"type": "function", "function": {"name": "lookup", "parameters": {}}}],
    )
    assert size.images == 1 and size.text_bytes > len("what is this") + len("lookup")
    assert size.media_tokens > 0 and size.extras == 1


def test_estimator_tightens_only_after_enough_observations():
    est = TokenEstimator()
    # 4000 bytes of English: ~750 prose words, ~1000 tokens
    size = InputSize(text_bytes=4000, non_ascii_bytes=0, messages=1, images=0, words=750, word_bytes=3600)
    assert est.bound("m", size) == size.safe_bound()
    for _ in range(MIN_OBSERVATIONS):
        est.observe("m", size, 1016)  # ~0.25 tokens/byte (English)
    tight = est.bound("m", size)
    assert 1016 <= tight < size.safe_bound() / 2
    # Thai has no prose words: no learning carries over, so it keeps the safe bound
    thai = InputSize(text_bytes=4000, non_ascii_bytes=3600, messages=1, images=0)
    assert est.bound("m", thai) == thai.safe_bound()
    # nor does another model's
    assert est.bound("other", size) == size.safe_bound()
    # a denser observation raises the learned bound at once
    est.observe("m", size, 3000)
    assert est.bound("m", size) >= 3000
