//! Interrupt context: a token that only the IRQ entry path can create, so
//! that functions meant for interrupt handlers say so in their signature.

/// Proof that the caller runs in interrupt context with further IRQs masked.
pub struct IrqContext {
    _private: (),
}

impl IrqContext {
    /// Creates the token.
    ///
    /// # Safety
    /// Only the IRQ exception path may call this, for the duration of one
    /// interrupt, with IRQs masked on this CPU.
    pub unsafe fn new() -> Self {
        IrqContext { _private: () }
    }
}

/// An interrupt the controller delivered, to be ended with the same value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acknowledged {
    /// GIC interrupt ID.
    pub intid: u32,
    /// The raw acknowledge register value (carries the source CPU on GICv2).
    pub raw: u32,
}

/// Interrupt IDs 1020-1023 are special (spurious, no pending interrupt).
pub fn is_special(intid: u32) -> bool {
    (1020..=1023).contains(&intid)
}

/// Trigger of an interrupt line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Level-sensitive.
    Level,
    /// Edge-triggered.
    Edge,
}

/// What the kernel needs from an interrupt controller.
pub trait InterruptController {
    /// Sets up the distributor and this CPU's interface; all interrupts start
    /// disabled.
    fn init(&mut self) -> Result<(), crate::gic::GicError>;
    /// Lets `intid` through to this CPU.
    fn enable(&mut self, intid: u32);
    /// Stops `intid`.
    fn disable(&mut self, intid: u32);
    /// Sets the priority of `intid` (lower is more urgent).
    fn set_priority(&mut self, intid: u32, priority: u8);
    /// Sets the trigger of `intid` (SGIs and some PPIs ignore it).
    fn set_trigger(&mut self, intid: u32, trigger: Trigger);
    /// Takes the highest-priority pending interrupt, if any.
    fn acknowledge(&mut self) -> Option<Acknowledged>;
    /// Ends an interrupt taken with [`InterruptController::acknowledge`].
    fn end_of_interrupt(&mut self, interrupt: Acknowledged);
}
