-- wrk script for the inferd bench cross-check: POST the V2 JSON body in $BENCH_BODY to $BENCH_PATH.
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
local body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.path = os.getenv("BENCH_PATH")
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
