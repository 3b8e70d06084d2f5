using System.Diagnostics.Metrics;

namespace AgentPg.Benchmarks;

/// <summary>What a window of work cost the database: write transactions (transaction ids assigned, so commits that flush
/// WAL), WAL bytes, and client round trips (Npgsql's <c>db.client.operation.duration</c> measurements, one per command or
/// batch executed by this process).</summary>
internal sealed class DbCounters : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly CpuMeter _cpu = new();
    private long _operations;

    public DbCounters()
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == "Npgsql" && instrument.Name == "db.client.operation.duration")
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<double>((_, _, _, _) => Interlocked.Increment(ref _operations));
        _listener.Start();
    }

    public long Operations => Interlocked.Read(ref _operations);

    public async Task<Snapshot> TakeAsync(BenchEnvironment env)
    {
        var operations = Operations;
        var cpu = _cpu.Take();
        await using var command = env.DataSource.CreateCommand(
            "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint, (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint");
        await using var reader = await command.ExecuteReaderAsync();
        await reader.ReadAsync();
        return new Snapshot(reader.GetInt64(0), reader.GetInt64(1), operations, cpu);
    }

    public void Dispose() => _listener.Dispose();

    public readonly record struct Snapshot(long NextXid, long WalBytes, long Operations, CpuMeter.Sample Cpu)
    {
        public Cost PerRun(Snapshot later, long runs, bool clientOperations = true) => runs <= 0
            ? new Cost(double.NaN, double.NaN, double.NaN, new CpuPerRun(double.NaN, double.NaN, double.NaN))
            : new Cost(
                (double)(later.NextXid - NextXid) / runs,
                (double)(later.WalBytes - WalBytes) / runs,
                // The snapshot query itself is one operation.
                clientOperations ? (double)(later.Operations - Operations - 1) / runs : double.NaN,
                Cpu.PerRun(later.Cpu, runs));
    }

    /// <param name="Cpu">CPU milliseconds per run: this process, pgbench (exited children), PostgreSQL.</param>
    public readonly record struct Cost(double WriteTransactions, double WalBytes, double RoundTrips, CpuPerRun Cpu);
}
