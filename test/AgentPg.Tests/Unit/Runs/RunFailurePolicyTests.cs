using AgentPg.Runs;
using AgentPg.Storage;
using Npgsql;

namespace AgentPg.Tests.Unit.Runs;

public sealed class RunFailurePolicyTests
{
    private static PostgresException Postgres(string sqlState) => new("message", "ERROR", "ERROR", sqlState);

    [Fact]
    public void Decide_ClaimLost_DropsTheWork()
        => Assert.Equal(new RunFailureDecision(RunFailureAction.ClaimLost), RunFailurePolicy.Decide(Postgres(Db.ClaimLostSqlState), cancelled: false));

    [Fact]
    public void Decide_ClaimLostWrappedByNpgsql_DropsTheWork()
        => Assert.Equal(RunFailureAction.ClaimLost,
            RunFailurePolicy.Decide(new NpgsqlException("batch failed", Postgres(Db.ClaimLostSqlState)), cancelled: false).Action);

    [Fact]
    public void Decide_ClaimLostWhileCancelled_IsStillAClaimLost()
        => Assert.Equal(RunFailureAction.ClaimLost, RunFailurePolicy.Decide(Postgres(Db.ClaimLostSqlState), cancelled: true).Action);

    [Fact]
    public void Decide_CancellationOfTheRunsWork_WritesNothing()
        => Assert.Equal(new RunFailureDecision(RunFailureAction.Cancelled), RunFailurePolicy.Decide(new OperationCanceledException(), cancelled: true));

    [Fact]
    public void Decide_RunFailure_FailsTheRunWithItsTypeAndMessage()
        => Assert.Equal(new RunFailureDecision(RunFailureAction.Fail, ErrorTypes.MaxTokensExceeded, "cut off"),
            RunFailurePolicy.Decide(new RunFailureException(ErrorTypes.MaxTokensExceeded, "cut off"), cancelled: false));

    [Fact]
    public void Decide_RunFailureAfterACancel_StillFailsTheRun()
        => Assert.Equal(RunFailureAction.Fail, RunFailurePolicy.Decide(new RunFailureException(ErrorTypes.BatchError, "x"), cancelled: true).Action);

    [Fact]
    public void Decide_UnexpectedError_FailsTheRunAsAProcessingError()
        => Assert.Equal(new RunFailureDecision(RunFailureAction.Fail, ErrorTypes.ProcessingError, "Processing the run failed: boom"),
            RunFailurePolicy.Decide(new InvalidOperationException("boom"), cancelled: false));

    [Fact]
    public void Decide_PermanentDatabaseError_FailsTheRunAsAProcessingError()
        => Assert.Equal(RunFailureAction.Fail, RunFailurePolicy.Decide(Postgres(PostgresErrorCodes.CheckViolation), cancelled: false).Action);

    [Fact]
    public void Decide_ConnectionLost_LeavesTheRunToTheRescue()
        => Assert.Equal(new RunFailureDecision(RunFailureAction.LeaveForRescue),
            RunFailurePolicy.Decide(new NpgsqlException("connection lost", new IOException("reset")), cancelled: false));

    [Theory]
    [InlineData(PostgresErrorCodes.AdminShutdown)]
    [InlineData(PostgresErrorCodes.DeadlockDetected)]
    [InlineData(PostgresErrorCodes.SerializationFailure)]
    [InlineData(PostgresErrorCodes.TooManyConnections)]
    public void Decide_TransientServerError_LeavesTheRunToTheRescue(string sqlState)
        => Assert.Equal(RunFailureAction.LeaveForRescue, RunFailurePolicy.Decide(Postgres(sqlState), cancelled: false).Action);

    [Fact]
    public void Decide_CancellationNotOfTheRunsWork_LeavesTheRunToTheRescue()
        => Assert.Equal(RunFailureAction.LeaveForRescue, RunFailurePolicy.Decide(new TaskCanceledException("a timeout"), cancelled: false).Action);
}
