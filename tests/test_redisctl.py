from redisctl import RunningRedis, _ping


def test_redis_fixture_serves_a_real_server(redis_server: RunningRedis) -> None:
    assert _ping(redis_server.port)
    assert redis_server.url.startswith("redis://127.0.0.1:")
