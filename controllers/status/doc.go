// Package status is the friendgate controller's FriendPolicy status reconciler
// (docs/operator.md).
//
// For each FriendPolicy it compiles the spec and the labelled ConfigMap lists with the
// engine the webhook replicas use, checks that every serving replica's Lease watermark
// shows it enforces the policy's current generation, and writes Ready, counts and
// observedGeneration to the status, only when something in it changed. For a policy with
// limits it also writes LimitsShared: whether the replicas, as their Leases say, count
// them together through Redis. Replica counts appear in a status only while it is
// Propagating or its limits are counted per replica; the serving replicas are listed in
// one summary ConfigMap instead (SummaryName).
//
// Three sources trigger a reconcile: a FriendPolicy's generation changing, a labelled
// ConfigMap its blocklists select changing, and the Tracker announcing a change among the
// serving webhook replicas (one joined, left or expired, a watermark moved, or a replica
// started or stopped counting limits through Redis), for the policies that change can
// affect only, found in memory.
package status
