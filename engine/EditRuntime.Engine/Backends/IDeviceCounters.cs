namespace EditRuntime.Backends;

/// <summary>
/// Device-side counters a backend can offer for reports: GPU time of all work submitted so far (from
/// timestamps, not wall time) and the peak of tensor memory in use. The Torch backend runs on the
/// CPU and has neither; callers test for this interface.
/// </summary>
public interface IDeviceCounters
{
    /// <summary>Seconds of device time of everything submitted so far (monotonic).</summary>
    double DeviceBusySeconds { get; }
    /// <summary>Most bytes of device memory held by live tensors since the last <see cref="ResetPeakDeviceBytes"/>.</summary>
    long PeakDeviceBytes { get; }
    /// <summary>Starts a new peak from the bytes in use now.</summary>
    void ResetPeakDeviceBytes();
}
