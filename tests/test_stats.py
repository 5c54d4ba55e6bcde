"""Counts that never cross vendors: a vendor's stats move only with its own jobs."""

LIGHT = "/api/image-queue/process-image-queue"
STATS = "/api/image-queue/queue-stats"


def test_a_vendors_stats_do_not_move_while_another_vendor_runs_jobs(
    client, vendor_key, photo_server, photos, work
):
    a, b, ops = vendor_key("vendor-a"), vendor_key("vendor-b"), vendor_key("ops", operator=True)
    photo_server.serve("/coffee.jpg", photos["coffee"])
    url = photo_server.url("/coffee.jpg")
    body = {"image_url": url, "options": {"resize": [32, 32]}}
    client.post(LIGHT, json={**body, "record_id": "b1"}, headers=b)
    work()
    before = client.get(STATS, headers=b).json
    assert before["queues"]["image-processing"]["finished"] == 1

    for i in range(4):
        assert client.post(LIGHT, json={**body, "record_id": f"a{i}"}, headers=a).status_code == 202
    during = client.get(STATS, headers=b).json  # A's jobs queued
    work()
    after = client.get(STATS, headers=b).json  # A's jobs finished
    assert before == during == after
    assert client.get(STATS, headers=a).json["queues"]["image-processing"]["finished"] == 4

    everyone = client.get(STATS, headers=ops).json
    assert everyone["queues"]["image-processing"]["finished"] == 5
    assert (
        everyone["vendors"]["vendor-a"]["finished"] == 4 and everyone["vendors"]["vendor-b"]["finished"] == 1
    )
