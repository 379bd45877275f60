-- wrk script for bench/ingest: POSTs pre-generated, distinct, signed WooCommerce deliveries.
--
--   wrk -t1 -c64 -d10s --latency -s load.lua http://127.0.0.1:PORT -- <file prefix> <path>
--
-- Thread n reads "<file prefix>-<n>.req", one request per line: "<base64 signature> <body>",
-- streaming (a line per request, nothing held in memory) and starting over at the end of the
-- file (counted as "wraps": a wrapped Koppel run re-sends deliveries, which are then duplicates).
-- done() prints one line "BENCH-JSON {...}" with requests, duration, latency percentiles, socket
-- errors and the count of each HTTP status.

local threads = {}

function setup(thread)
   thread:set("tid", #threads)
   table.insert(threads, thread)
end

function init(args)
   prefix = args[1]
   path = args[2] or "/"
   file = assert(io.open(prefix .. "-" .. tid .. ".req", "rb"))
   sent = 0
   wraps = 0
   statuses = {}
   headers = {
      ["Content-Type"] = "application/json",
      ["User-Agent"] = "WooCommerce/9.4.2 Hookshot (WordPress/6.7)",
      ["X-WC-Webhook-Source"] = "https://shop.example/",
      ["X-WC-Webhook-Topic"] = "order.created",
      ["X-WC-Webhook-Resource"] = "order",
      ["X-WC-Webhook-Event"] = "created",
      ["X-WC-Webhook-ID"] = "7",
      ["X-WC-Webhook-Delivery-ID"] = "0f0e0d0c0b0a09080706050403020100",
   }
end

function request()
   local line = file:read("*l")
   if line == nil then
      wraps = wraps + 1
      file:seek("set", 0)
      line = file:read("*l")
   end
   sent = sent + 1
   local space = string.find(line, " ", 1, true)
   headers["X-WC-Webhook-Signature"] = string.sub(line, 1, space - 1)
   return wrk.format("POST", path, headers, string.sub(line, space + 1))
end

function response(status, response_headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end

local function encode(value)
   if type(value) == "table" then
      local parts = {}
      for k, v in pairs(value) do
         parts[#parts + 1] = string.format("%q:%s", tostring(k), encode(v))
      end
      return "{" .. table.concat(parts, ",") .. "}"
   elseif type(value) == "number" then
      return string.format("%.17g", value)
   end
   return string.format("%q", tostring(value))
end

function done(summary, latency, requests)
   local statuses_all, sent_all, wraps_all = {}, 0, 0
   for _, thread in ipairs(threads) do
      for status, count in pairs(thread:get("statuses") or {}) do
         statuses_all[tostring(status)] = (statuses_all[tostring(status)] or 0) + count
      end
      sent_all = sent_all + (thread:get("sent") or 0)
      wraps_all = wraps_all + (thread:get("wraps") or 0)
   end
   local result = {
      requests = summary.requests,
      duration_us = summary.duration,
      bytes = summary.bytes,
      sent = sent_all,
      wraps = wraps_all,
      errors = summary.errors,
      statuses = statuses_all,
      latency_us = {
         mean = latency.mean,
         max = latency.max,
         p50 = latency:percentile(50),
         p90 = latency:percentile(90),
         p99 = latency:percentile(99),
         p999 = latency:percentile(99.9),
      },
   }
   io.write("BENCH-JSON " .. encode(result) .. "\n")
end
