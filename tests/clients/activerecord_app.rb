# An app version as Rails writes one: ActiveRecord models without a declared primary key
# (ActiveRecord reads it from pg_index, once per process), prepared statements on, the
# search_path that `migrate latest` printed for this version set by the adapter.
#
# Driven by tests/clients.rs over stdin/stdout: each line `round` runs every operation of this
# version once and prints one JSON line, {"op": "ok" | "<error class>: <message>"}; `quit` ends.
# Environment: DATABASE_URL, SEARCH_PATH, APP_VERSION (old | new), DECLARED_KEY (optional).
require "active_record"
require "json"

ActiveRecord::Base.establish_connection(
  ENV.fetch("DATABASE_URL") + (ENV.fetch("DATABASE_URL").include?("?") ? "&" : "?") + "prepared_statements=true",
)
ActiveRecord::Base.connection.schema_search_path = ENV.fetch("SEARCH_PATH")
ActiveRecord::Base.logger = nil

class User < ActiveRecord::Base; end
class Order < ActiveRecord::Base; end
class Job < ActiveRecord::Base; end
# DECLARED_KEY=1: the models name their primary key (`self.primary_key = "id"`), so
# ActiveRecord does not look it up in pg_index.
if ENV["DECLARED_KEY"] == "1"
  [User, Order, Job].each { |m| m.primary_key = "id" }
end

OLD = ENV.fetch("APP_VERSION") == "old"
NAME = OLD ? "name" : "full_name"
round = 0

def attempt(results, op)
  yield
  results[op] = "ok"
rescue StandardError => e
  results[op] = "#{e.class}: #{e.message.lines.first&.strip}"
end

$stdout.sync = true
$stdin.each_line do |line|
  break if line.strip == "quit"
  round += 1
  r = {}
  attempt(r, "users.find") do
    u = User.find(1)
    raise "no #{NAME}" if u[NAME].nil?
  end
  attempt(r, "users.create") do
    u = User.create!(NAME => "ar #{ENV['APP_VERSION']} #{round}", "age" => round)
    raise "created without an id" if u.id.nil?
    u.update!("age" => round + 1)
    raise "not found again" unless User.find(u.id)["age"] == round + 1
  end
  attempt(r, "users.where") do
    n = User.where(id: [1, 2, 3]).to_a.size
    raise "#{n} of 3 rows" unless n == 3
  end
  attempt(r, "orders.find") { Order.find(1) }
  attempt(r, "orders.create") do
    o = Order.create!("user_id" => 1, "total" => round)
    raise "created without an id" if o.id.nil?
  end
  attempt(r, "orders.copy") do
    raw = Order.connection.raw_connection
    raw.copy_data("COPY orders (user_id, total) FROM STDIN") { raw.put_copy_data("1\t#{round}\n") }
  end
  attempt(r, "users.copy") do
    raw = User.connection.raw_connection
    raw.copy_data("COPY users (#{NAME}, age) FROM STDIN") { raw.put_copy_data("copied\t#{round}\n") }
  end
  attempt(r, "jobs.truncate") do
    Job.create!("payload" => "x")
    Job.connection.truncate("jobs")
  end
  puts JSON.generate(r)
end
