# The wire protocol of pstrain. docs/protocol.md describes it in full, for
# whoever writes a client: the framing of both planes, a node's life, which
# messages each role may send, what a server checks, the errorCode table,
# what `clock` means, and how parameters are laid out in a key range.
#
# Two planes, both ZeroMQ:
#
# Control plane: the coordinator binds a ROUTER; every node (server or
# worker) connects a DEALER. Each ZeroMQ message is exactly one frame holding
# one `Control` message (unpacked Cap'n Proto, at most 1 MiB).
#
# Data plane: each server binds a ROUTER; each worker connects one DEALER per
# server. A message is multipart: frame 1 is one `DataHeader`; the frames
# after it are raw little-endian payload bytes (float32 unless `dtype` says
# otherwise), sent without copying. `DataHeader.payloadFrames` says how many
# follow. Receivers copy the header frame into an 8-byte aligned buffer
# before reading it, bound the traversal (64 KiB of words), and check every
# size and range against what they own before touching a payload.
@0xc4a1f3c2b9e07d51;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("pstrain::msg");

enum Role {
  coordinator @0;
  server @1;
  worker @2;
}

# A half-open range [begin, end) of parameter keys. A key is
# (tensorIndex << 32) | blockIndex; blocks hold at most 16384 floats of one
# tensor (common/ps/keys.h).
struct KeyRange {
  begin @0 :UInt64;
  end @1 :UInt64;
}

# ---------------------------------------------------------------- control

# node -> coordinator, first message of a node's life.
struct Register {
  role @0 :Role;
  requestedId @1 :Int32;     # --id N from the launcher, or -1: assign one
  incarnation @2 :UInt64;    # random per process start; tells restarts apart
  host @3 :Text;             # host name, for logs
  pid @4 :Int32;
  dataEndpoint @5 :Text;     # servers: where their data ROUTER listens
  localEndpoint @6 :Text;    # servers: the same ROUTER as an ipc:// socket, for
                             # nodes on the same host (hostKey)
  hostKey @7 :Text;          # host name and network namespace: equal keys can
                             # reach each other's ipc:// sockets
  launchToken @8 :Text;      # nodes started by the job's own launcher: the
                             # job's launch token (from the environment,
                             # PSTRAIN_LAUNCH_TOKEN); while the job starts,
                             # only nodes holding it are admitted
}

# Where one server listens and what it owns.
struct ServerInfo {
  id @0 :Int32;
  endpoint @1 :Text;
  ranges @2 :List(KeyRange);        # ranges this server owns (primary)
  incarnation @3 :UInt64;
  backupRanges @4 :List(KeyRange);  # ranges it keeps a replica of (--replication 2)
  localEndpoint @5 :Text;           # ipc:// alternative for nodes with the same hostKey
  hostKey @6 :Text;
}

# coordinator -> servers and workers after a server died: who owns what now
# (a backup promoted to primary). Requests routed by an older epoch are
# refused; workers redo their current step against the new owners.
struct Routing {
  membershipEpoch @0 :UInt64;
  servers @1 :List(ServerInfo);
}

# coordinator -> node, answer to Register: who you are and what the job is.
struct Assignment {
  nodeId @0 :Int32;            # this node's id within its role
  membershipEpoch @1 :UInt64;  # bumped at every change of membership
  jobText @2 :Text;            # the job file as read by the coordinator
  jobName @3 :Text;            # its file name, for messages
  jobBaseDir @4 :Text;         # folder that relative paths are relative to
  overrideKeys @5 :List(Text); # command-line overrides, applied in order
  overrideValues @6 :List(Text);
  inputDim @7 :Int32;          # the data's shape, as the coordinator read it
  numClasses @8 :Int32;
  servers @9 :List(ServerInfo);
  workers @10 :List(Int32);    # ids of the live workers, in hand-out order
  heartbeatMs @11 :UInt32;     # send a heartbeat this often
  timeoutMs @12 :UInt32;       # a peer silent this long is dead
  workerIncarnations @13 :List(UInt64);  # parallel to `workers`
  restoreDir @14 :Text;        # servers: load your ranges from this checkpoint
                               # folder instead of initialising them
  inputChannels @15 :Int32;    # a sample as an image (conv2d, maxpool layers);
  inputHeight @16 :Int32;      # all 0 when the data has no image shape
  inputWidth @17 :Int32;
}

# coordinator -> server: write your ranges' state (weights, optimizer state,
# clocks) into `dir`, one file per range, each checksummed and made durable.
struct CheckpointRequest {
  token @0 :UInt64;
  dir @1 :Text;
  # 0: write the ranges now (between epochs, nothing half-applied). Above
  # 0 (BSP): a cut while training goes on: copy each range the moment it
  # reaches this clock, before any update of the clock, and write the copy
  # in the background; answered when the files are on disk.
  cutClock @2 :Int64;
}

struct CheckpointFile {
  name @0 :Text;        # file name inside the checkpoint folder
  bytes @1 :UInt64;
  crc32 @2 :UInt32;     # of the content: the file without its trailing CRC-32
  keyBegin @3 :UInt64;
  keyEnd @4 :UInt64;
  clock @5 :Int64;      # the clock the file's weights are at (-1: not dense weights)
}

# server -> coordinator.
struct CheckpointDone {
  nodeId @0 :Int32;
  token @1 :UInt64;
  files @2 :List(CheckpointFile);
  error @3 :Text;       # not empty: the checkpoint failed, and why
  # A cut this server could not take (a range was past the clock already,
  # its ranges changed, or its previous cut is still being written): no
  # files, the reason in `error`; the coordinator skips that checkpoint.
  missed @4 :Bool;
  writeSeconds @5 :Float64;  # cuts: the time its writer took to code and write the files
}

# node -> coordinator: assignment applied (servers: parameters initialised).
struct Ready {
  nodeId @0 :Int32;
  incarnation @1 :UInt64;
}

# both ways, every heartbeatMs. The coordinator answers each with its own.
struct Heartbeat {
  nodeId @0 :Int32;
  incarnation @1 :UInt64;
  role @2 :Role;
  # Nodes: how long (ms) the node's main thread has been busy without
  # looking at its control link (a long step, loading, evaluating). The
  # heartbeat itself comes from a thread of its own. 0 from the coordinator.
  computeIdleMs @3 :UInt32;
}

# coordinator -> workers: train epoch `epoch` (0-based).
struct StartEpoch {
  epoch @0 :Int32;
  firstClock @1 :Int64;   # BSP/SSP clock of the epoch's first step
  steps @2 :Int64;        # steps every slot takes in this epoch
  slotOwners @3 :List(Int32);  # worker id computing each slot (hand-out position)
  onlySlots @4 :List(Int32);   # if not empty: (re)compute just these slots'
                               # steps (a dead worker's, after this one was done)
  firstStep @5 :Int64;         # the step to start at: above 0 when the job
                               # resumed from a checkpoint taken mid-epoch
  slotFrom @6 :List(Int64);    # per slot, the first step its owner computes
                               # (a worker joining mid-epoch starts each slot
                               # where its giver stopped); empty: firstStep
}

# coordinator -> servers and workers, whenever the set of live workers or
# the owners of the slots change (a worker died or joined). Servers refuse
# requests from incarnations no longer listed; a worker that now owns more
# slots computes them from its current step on.
struct Membership {
  membershipEpoch @0 :UInt64;
  workers @1 :List(Int32);
  workerIncarnations @2 :List(UInt64);
  slotOwners @3 :List(Int32);
}

# worker -> coordinator: Membership `membershipEpoch` applied. A slot it
# lost in it goes over at a step boundary: it computes releasedSlots[i]'s
# steps before releasedAt[i], the new owner the rest. releasedAt is the
# step after the one it is at while it trains the epoch, the epoch's first
# step when it had not started it, the step count when it had finished.
struct MembershipAck {
  nodeId @0 :Int32;
  membershipEpoch @1 :UInt64;
  releasedSlots @2 :List(Int32);
  releasedAt @3 :List(Int64);
}

# worker -> coordinator, about twice a second while training.
struct Progress {
  nodeId @0 :Int32;
  epoch @1 :Int32;
  samples @2 :Int64;      # training samples done so far this epoch
  lossSum @3 :Float64;    # their summed loss
  steps @4 :Int64;        # steps of the epoch done (checkpoint.every_seconds picks a cut after them)
}

# worker -> coordinator at the end of its share of an epoch.
struct EpochDone {
  nodeId @0 :Int32;
  epoch @1 :Int32;
  samples @2 :Int64;
  lossSum @3 :Float64;
  correct @4 :Int64;
  sampleHash @5 :UInt64;   # sum of Mix64(index) over the samples processed
  computeSeconds @6 :Float64;
  pushWaitSeconds @7 :Float64;
  pullWaitSeconds @8 :Float64;
  peakRssBytes @9 :Int64;  # the worker process's peak resident memory so far
}

# coordinator -> worker: evaluate test rows [begin, end) with the newest weights.
# A worker may be sent several (the ranges of workers that died holding
# them); it evaluates them in order and answers each with an EvalDone.
struct Evaluate {
  epoch @0 :Int32;
  begin @1 :Int64;
  end @2 :Int64;
  # The clock the epoch's weights are at: a worker whose weights are not
  # (one that joined during the epoch) pulls them first.
  clock @3 :Int64;
}

# worker -> coordinator.
struct EvalDone {
  nodeId @0 :Int32;
  epoch @1 :Int32;
  lossSum @2 :Float64;
  correct @3 :Int64;
  count @4 :Int64;
  begin @5 :Int64;             # the first test row evaluated
  scores @6 :List(Float32);    # binary models: P(label 1) of each row from begin
}

# coordinator -> server: report the sum of squares of the parameters you
# own, and the samples behind the updates applied for clocks in
# [clockBegin, clockEnd) (which the server may then forget).
struct StatsRequest {
  token @0 :UInt64;
  clockBegin @1 :Int64;
  clockEnd @2 :Int64;
}

# server -> coordinator.
struct StatsReply {
  nodeId @0 :Int32;
  token @1 :UInt64;
  sumSquares @2 :Float64;
  updatesApplied @3 :Int64;
  pushesRefused @4 :Int64;
  badMessages @5 :Int64;
  samples @6 :Int64;        # per (slot, clock) in the range, counted once
  sampleHash @7 :UInt64;    # sum of the pushes' sampleHash, once per (slot, clock)
  minSlotSamples @8 :Int64; # of the key ranges it owns, the least samples
                            # any one range received (must equal samples)
  nonFiniteRefused @9 :Int64;  # pushes refused for holding NaN or Inf
  sparseRows @10 :Int64;       # embedding rows it holds
  sparseBytes @11 :Int64;      # their values and optimizer state
  weightsDigest @12 :UInt64;   # the weights digest (common/ps/weights_digest.h) of the
                               # blocks of the ranges it owns and of its embedding rows
  digestBlocks @13 :Int64;     # how many blocks that digest covers
}

# coordinator -> node: exit now with this code.
struct Shutdown {
  exitCode @0 :Int32;
  reason @1 :Text;
}

# ------------------------------------------------ a coordinator restarted
# A node whose coordinator fell silent keeps its state for
# cluster.coordinator_grace_s and offers itself to whatever coordinator
# answers at the same address (the job restarted with --resume).

# node -> coordinator, every heartbeat interval while its coordinator is
# gone, and at once when asked (rejoinAsk).
struct Rejoin {
  role @0 :Role;
  nodeId @1 :Int32;
  incarnation @2 :UInt64;
  host @3 :Text;
  pid @4 :Int32;
  dataEndpoint @5 :Text;     # servers, as in Register
  localEndpoint @6 :Text;
  hostKey @7 :Text;
  launchToken @8 :Text;      # the token the node was launched with
  membershipEpoch @9 :UInt64;  # the newest membership the node acts on
}

# coordinator -> node: taken into the restarted job; answer with your state.
struct Adopted {
  membershipEpoch @0 :UInt64;
}

# worker -> coordinator, after adopted: where its training stands.
struct WorkerState {
  nodeId @0 :Int32;
  epoch @1 :Int32;           # the epoch last started (-1: none yet)
  firstClock @2 :Int64;      # its first step's clock
  steps @3 :Int64;
  trainingDone @4 :Bool;     # its slots' steps of `epoch` are all pushed
  slotOwners @5 :List(Int32);  # the owners it acts on (worker id per slot)
  firstStep @6 :Int64;       # where `epoch` started (above 0: resumed from a cut)
}

# server -> coordinator, after adopted: the ranges it holds.
struct ServerState {
  nodeId @0 :Int32;
  ranges @1 :List(KeyRange);        # owned
  backupRanges @2 :List(KeyRange);  # replicas of other servers' ranges
}

# server -> coordinator: it holds a copy of keys [keyBegin, keyEnd) as its
# primary had them at `version` (a replicaState), and gets every update from
# then on: a backup that can be promoted.
struct ReplicaReady {
  nodeId @0 :Int32;
  keyBegin @1 :UInt64;
  keyEnd @2 :UInt64;
  version @3 :Int64;
}

struct Control {
  union {
    register @0 :Register;
    assignment @1 :Assignment;
    ready @2 :Ready;
    heartbeat @3 :Heartbeat;
    startEpoch @4 :StartEpoch;
    progress @5 :Progress;
    epochDone @6 :EpochDone;
    evaluate @7 :Evaluate;
    evalDone @8 :EvalDone;
    statsRequest @9 :StatsRequest;
    statsReply @10 :StatsReply;
    shutdown @11 :Shutdown;
    error @12 :Text;          # the peer refused the last message: why
    membership @13 :Membership;
    membershipAck @14 :MembershipAck;
    checkpointRequest @15 :CheckpointRequest;
    checkpointDone @16 :CheckpointDone;
    routing @17 :Routing;
    rejoin @18 :Rejoin;
    rejoinAsk @19 :Void;      # coordinator -> a peer it does not know: say who you are
    adopted @20 :Adopted;
    workerState @21 :WorkerState;
    serverState @22 :ServerState;
    replicaReady @23 :ReplicaReady;
  }
}

# ---------------------------------------------------------------- data

enum DataOp {
  push @0;       # gradients for keyRange at `clock`; payload: the range's floats
  pull @1;       # weights of keyRange once `clock` steps are applied; no payload
  pushRows @2;   # sparse: gradients of `rows` of `table`, all of the row
                 # bucket keyRange names; payload: rows x dim; applied once
                 # per (slot, clock, part)
  pullRows @3;   # sparse: values of `rows` of `table` (of one bucket); no payload
  reply @4;      # answer to requestId; pull/pullRows: payload as requested
  error @5;      # requestId failed: `error` says why
  replicaState @7;  # primary -> a new backup: one piece of a range
                    # (keyRange; `step` of `slot` pieces), its whole state as
                    # a checkpoint file holds it, cut into payload frames;
                    # the updates applied after it follow as `replicate`
  replicate @6;  # primary -> backup: an update the primary applied to
                 # keyRange (payload: the gradient), to apply identically
  replicateRows @8;  # primary -> backup: a row push the primary applied to
                     # the bucket keyRange names, as the worker sent it
                     # (table, dim, rows, lr, slot, clock, part; payload:
                     # the gradients), answered once applied
}

enum DType {
  float32 @0;   # 4 bytes a value
  float16 @1;   # IEEE half, 2 bytes a value (push: the gradient; pull: the weights asked for)
  bfloat16 @2;  # the top half of a float32, rounded to nearest even
  topk @3;      # push only: k UInt32 indices (ascending, relative to the range) then k Float32
}

struct DataHeader {
  op @0 :DataOp;
  requestId @1 :UInt64;        # chosen by the requester; echoed in the reply
  workerId @2 :Int32;
  incarnation @3 :UInt64;      # the worker's; requests of a dead one are refused
  membershipEpoch @4 :UInt64;  # the sender's view of the membership
  clock @5 :Int64;             # push: the step the gradient belongs to;
                               # pull: the weights after this many steps
  seq @6 :UInt64;              # per worker and server, increases by one a push
  keyRange @7 :KeyRange;       # dense ops
  lr @8 :Float32;              # push: the learning rate for this step
  dtype @9 :DType;             # push: how the payload is coded; pull: how to code the reply
  payloadFrames @10 :UInt32;   # raw frames after this header
  table @11 :UInt32;           # sparse ops: which table
  dim @12 :UInt32;             # sparse ops: floats per row
  rows @13 :List(UInt64);      # sparse ops: row ids
  error @14 :Text;             # op = error
  sampleCount @15 :Int64;      # push: samples behind this gradient (0: an empty step)
  slot @17 :Int32;             # push: the hand-out position the gradient is for
  sampleHash @18 :UInt64;      # push: sum of Mix64(sample index) of its samples
  step @19 :Int64;             # replicate: the optimizer's step number
  version @20 :Int64;          # replicate: the primary's version after it
  part @21 :UInt32;            # pushRows: which of the step's row messages for the
                               # bucket (table << 20 | index)
  errorCode @16 :UInt8;        # op = error: what the requester should do, as
                               # pstrain::StatusCode (4 = aborted: stale
                               # membership or incarnation, restart the step)
}
