def test_permit(ask, world):
    r = ask("evaluation", world.question())
    print(r.json())
    assert r.status_code == 200
    assert r.json()["decision"] is True
