// An app version written with JDBC (Debian's libpostgresql-jdbc-java): statements prepared
// once and executed again and again, server-side from their first execution
// (prepareThreshold=1), the search_path that `migrate latest` printed set as the driver's
// currentSchema; CopyManager for COPY.
//
// Driven by tests/clients.rs over stdin/stdout: each line `round` runs every operation once and
// prints one JSON line, {"op": "ok" | "<error class>: <message>"}; `quit` ends.
// Environment: JDBC_URL (with user and password), SEARCH_PATH, APP_VERSION (old | new).
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.StringReader;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.util.LinkedHashMap;
import java.util.Map;
import org.postgresql.PGConnection;

public class JdbcApp {
    interface Op { void run() throws Exception; }

    static String quote(String s) {
        return "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
    }

    public static void main(String[] args) throws Exception {
        boolean old = System.getenv("APP_VERSION").equals("old");
        String name = old ? "name" : "full_name";
        String url = System.getenv("JDBC_URL") + "&prepareThreshold=1&currentSchema="
            + java.net.URLEncoder.encode(System.getenv("SEARCH_PATH").replace(" ", ""), "UTF-8");
        Connection c = DriverManager.getConnection(url);
        PreparedStatement find = c.prepareStatement("SELECT * FROM users WHERE id = ?");
        PreparedStatement create = c.prepareStatement(
            "INSERT INTO users (" + name + ", age) VALUES (?, ?) RETURNING *");
        PreparedStatement order = c.prepareStatement("SELECT * FROM orders WHERE id = ?");
        PreparedStatement job = c.prepareStatement("INSERT INTO jobs (payload) VALUES (?)");
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        int n = 0;
        for (String line; (line = in.readLine()) != null && !line.trim().equals("quit"); ) {
            n++;
            final int round = n;
            Map<String, Op> ops = new LinkedHashMap<>();
            ops.put("users.find", () -> {
                find.setLong(1, 1);
                try (ResultSet rs = find.executeQuery()) {
                    if (!rs.next() || rs.getString(name) == null) throw new IllegalStateException("no " + name);
                }
            });
            ops.put("users.create", () -> {
                create.setString(1, "jdbc " + round);
                create.setInt(2, round);
                try (ResultSet rs = create.executeQuery()) {
                    if (!rs.next() || rs.getLong("id") == 0) throw new IllegalStateException("no id");
                }
            });
            ops.put("orders.select", () -> {
                order.setLong(1, 1);
                try (ResultSet rs = order.executeQuery()) { rs.next(); }
            });
            ops.put("orders.copy", () -> c.unwrap(PGConnection.class).getCopyAPI().copyIn(
                "COPY orders (user_id, total) FROM STDIN", new StringReader("1\t" + round + "\n")));
            ops.put("users.copy", () -> c.unwrap(PGConnection.class).getCopyAPI().copyIn(
                "COPY users (" + name + ", age) FROM STDIN", new StringReader("copied\t" + round + "\n")));
            ops.put("jobs.truncate", () -> {
                job.setString(1, "x");
                job.executeUpdate();
                try (var s = c.createStatement()) { s.execute("TRUNCATE jobs"); }
            });
            StringBuilder out = new StringBuilder("{");
            for (Map.Entry<String, Op> e : ops.entrySet()) {
                String result;
                try {
                    e.getValue().run();
                    result = "ok";
                } catch (Exception ex) {
                    String m = String.valueOf(ex.getMessage()).split("\n")[0];
                    result = ex.getClass().getSimpleName() + ": " + m;
                }
                if (out.length() > 1) out.append(", ");
                out.append(quote(e.getKey())).append(": ").append(quote(result));
            }
            System.out.println(out.append("}"));
            System.out.flush();
        }
        c.close();
    }
}
